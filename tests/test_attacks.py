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


# --- per-sample budgets and train-mode BatchNorm (the training attack) ------------------------------------


def test_per_sample_budget_projects_each_sample_onto_its_own_ball(net: nn.Module, batch: Batch) -> None:
    """Per-sample eps/step equal running each sample alone with its scalar eps/step; a tensor of one value
    gives exactly the scalar result."""
    x, y = batch[0][:6], batch[1][:6]
    eps = torch.tensor([0.0, 0.02, 0.05, 0.1, 0.15, 0.2]).view(-1, 1, 1, 1)
    step = eps / 4
    x_adv = pgd(net, x, y, eps=eps, step_size=step, steps=7, start="none")
    for i in range(6):
        alone = pgd(net, x[i:i + 1], y[i:i + 1], eps=float(eps[i]), step_size=float(step[i]), steps=7,
                    start="none")
        assert torch.allclose(x_adv[i:i + 1], alone, atol=1e-7)
        assert (x_adv[i] - x[i]).abs().max() <= float(eps[i]) + 1e-7
    assert torch.equal(x_adv[0], x[0])  # a zero budget leaves the image clean
    same = pgd(net, x, y, eps=torch.full((6, 1, 1, 1), 0.1), step_size=torch.full((6, 1, 1, 1), 0.025), steps=3,
               start="none")
    assert torch.equal(same, pgd(net, x, y, eps=0.1, step_size=0.025, steps=3, start="none"))


def test_per_sample_step_is_each_samples_own_signed_step() -> None:
    """One step on a linear model from inside the box: x + step_i sign(w) (clipped to eps_i); the random start
    keeps ``start_eps``."""
    w = torch.tensor([[1.0, -1.0, 2.0, -0.5]])
    model = nn.Linear(4, 2, bias=False)
    with torch.no_grad():
        model.weight.copy_(torch.cat([w, -w]))
    x = torch.full((3, 4), 0.5).view(3, 1, 2, 2)
    flat = nn.Sequential(nn.Flatten(), model)
    eps = torch.tensor([0.1, 0.05, 0.01]).view(-1, 1, 1, 1)
    step = torch.tensor([0.02, 0.04, 0.03]).view(-1, 1, 1, 1)
    y = torch.zeros(3, dtype=torch.long)  # CE rises when the class-0 logit w.x falls: step along -sign(w)
    x_adv = pgd(flat, x, y, eps=eps, step_size=step, steps=1, start="none")
    expected = x - torch.minimum(step, eps) * w.sign().view(1, 1, 2, 2)
    assert torch.allclose(x_adv, expected)
    start = pgd(flat, x, y, eps=eps, step_size=torch.zeros_like(step), steps=1, start="uniform", start_eps=0.3,
                generator=torch.Generator().manual_seed(0))
    noise = (torch.rand(x.shape, generator=torch.Generator().manual_seed(0)) * 2 - 1) * 0.3
    assert torch.allclose(start, torch.minimum(torch.maximum(x + noise, x - eps), x + eps))


def test_train_bn_crafts_with_batch_statistics_and_frozen_running_statistics() -> None:
    """``train_bn``: the official RobustLT loop (train mode, BN not tracking) step for step; running statistics,
    BN flags and the model's mode are left as they were."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(),
                          nn.Linear(256, C))
    model.train()
    for _ in range(3):
        model(torch.rand(16, 1, 8, 8))
    model.eval()
    x, y = torch.rand(12, 1, 8, 8), torch.arange(12) % C
    before = {k: v.clone() for k, v in model.state_dict().items()}
    eps = (torch.arange(12) % 3 + 1).float().view(-1, 1, 1, 1) * 0.03
    x_adv = pgd(model, x, y, eps=eps, step_size=eps / 4, steps=3, start="none", train_bn=True)
    assert not model.training and model[1].track_running_stats
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    model.train()
    model[1].track_running_stats = False
    ref = x.clone()
    for _ in range(3):
        ref.requires_grad_(True)
        grad = torch.autograd.grad(F.cross_entropy(model(ref), y, reduction="sum"), ref)[0]
        ref = torch.min(torch.max(ref.detach() + eps / 4 * grad.sign(), x - eps), x + eps).clamp(0, 1)
    assert torch.allclose(x_adv, ref)
    model[1].track_running_stats = True
    model.eval()
    assert not torch.allclose(x_adv, pgd(model, x, y, eps=eps, step_size=eps / 4, steps=3, start="none"))
