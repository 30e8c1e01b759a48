"""PGD, FGSM and the CW loss: the threat model's box, exact FGSM steps, agreement with textbook PGD."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bench.evaluation.attacks import cw_loss, fgsm, pgd
from bench.evaluation.suite import attack_params, attack_predictions
from bench.models.inference import InferenceModel
from methods.base import Method

C = 4
Batch = tuple[Tensor, Tensor]


@pytest.fixture(scope="module")
def batch() -> Batch:
    """8x8 grey images in [0, 1] with class-dependent brightness blobs; some pixels at 0 and 1."""
    gen = torch.Generator().manual_seed(0)
    y = torch.arange(C).repeat(50)
    x = torch.rand(y.numel(), 1, 8, 8, generator=gen)
    x[:, :, :2, :2] = 0.0
    x[:, :, -2:, -2:] = 1.0
    x[torch.arange(y.numel()), 0, 2 + y, 3] += 0.5
    return x.clamp(0, 1), y


@pytest.fixture(scope="module")
def net(batch: Batch) -> nn.Module:
    torch.manual_seed(0)
    x, y = batch
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(256, C))
    opt = torch.optim.Adam(model.parameters(), 1e-2)
    for _ in range(60):
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


def textbook_pgd(model: nn.Module, x: Tensor, y: Tensor, eps: float, alpha: float, steps: int,
                 gen: torch.Generator) -> Tensor:
    """Madry et al.'s PGD, written out: uniform start, signed-gradient ascent on mean CE, project, clip."""
    x_adv = x + (torch.rand(x.shape, generator=gen) * 2 - 1) * eps
    for _ in range(steps):
        x_adv = x_adv.detach().requires_grad_(True)
        grad = torch.autograd.grad(F.cross_entropy(model(x_adv), y), x_adv)[0]
        x_adv = x_adv + alpha * grad.sign()
        x_adv = torch.clamp(torch.maximum(torch.minimum(x_adv, x + eps), x - eps), 0, 1)
    return x_adv.detach()


def test_pgd_stays_inside_the_eps_ball_and_the_image_box(net: nn.Module, batch: Batch) -> None:
    x, y = batch
    eps = 0.1
    x_adv = pgd(net, x, y, eps=eps, step_size=0.04, steps=10, generator=torch.Generator().manual_seed(0))
    assert (x_adv - x).abs().max() <= eps + 1e-6
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    assert (x_adv - x).abs().max() > eps - 1e-6
    with torch.no_grad():
        assert (net(x_adv).argmax(1) == y).sum() < (net(x).argmax(1) == y).sum()


def test_fgsm_moves_every_unclipped_pixel_by_exactly_eps(net: nn.Module, batch: Batch) -> None:
    x, y = batch
    eps = 0.05
    x_adv = fgsm(net, x, y, eps=eps)
    x_req = x.clone().requires_grad_(True)
    grad = torch.autograd.grad(F.cross_entropy(net(x_req), y, reduction="sum"), x_req)[0]
    expected = (x + eps * grad.sign()).clamp(0, 1)
    assert torch.allclose(x_adv, expected, atol=1e-6)
    free = (grad != 0) & (x + eps * grad.sign() >= 0) & (x + eps * grad.sign() <= 1)
    assert free.float().mean() > 0.5
    assert torch.allclose((x_adv - x).abs()[free], torch.full_like(x[free], eps), atol=1e-6)
    clipped = (grad != 0) & ~free
    assert clipped.any() and ((x_adv[clipped] == 0) | (x_adv[clipped] == 1)).all()


def test_project_pgd_agrees_with_textbook_pgd(net: nn.Module, batch: Batch) -> None:
    x, y = batch
    eps = 0.02
    model = InferenceModel(net, Method({}, [1] * C))
    params = attack_params("pgd20", eps, eps / 4, C, 0)
    ours = attack_predictions(model, "pgd20", params, x, y, torch.Generator().manual_seed(7))
    x_theirs = textbook_pgd(net, x, y, eps, eps / 4, 20, torch.Generator().manual_seed(7))
    with torch.no_grad():
        theirs = net(x_theirs).argmax(1)
        clean = (net(x).argmax(1) == y).float().mean()
    acc_ours, acc_theirs = (ours == y).float().mean(), (theirs == y).float().mean()
    assert 0.1 < acc_ours < clean - 0.1
    assert abs(acc_ours - acc_theirs) <= 0.005


def test_cw_margin_loss_values() -> None:
    logits = torch.tensor([[5.0, 1.0, 0.0], [0.0, 60.0, 0.0], [2.0, 3.0, 1.0]])
    y = torch.tensor([0, 0, 0])
    assert cw_loss(logits, y, kappa=50.0).tolist() == [-54.0, 0.0, -49.0]
    assert cw_loss(logits, y, kappa=0.0).tolist() == [-4.0, 0.0, 0.0]


def test_attack_leaves_batchnorm_statistics_and_mode_alone() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.Flatten(), nn.Linear(72, C)).train()
    before = model[1].running_mean.clone()
    x, y = torch.rand(8, 1, 8, 8), torch.arange(8) % C
    pgd(model, x, y, eps=0.1, step_size=0.05, steps=3)
    assert model.training
    assert torch.equal(model[1].running_mean, before)
    assert all(p.grad is None for p in model.parameters())
