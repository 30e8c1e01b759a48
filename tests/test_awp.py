"""AWP: the perturbation's size, the restore, and one core step against a transcription of the official step."""

from __future__ import annotations

import copy
import json

import pytest
import torch
import torch.nn.functional as F
from conftest import train_with_validation as train
from torch import Tensor, nn

from bench.core import store
from bench.core.errors import InputError
from bench.core.progress import Progress
from bench.models.awp import AWPSettings, WeightPerturbation
from bench.training.config import build_config
from bench.training.loop import EpochStats, Trainee, build_trainee, craft, train_step

FIELDS = {"steps": 2, "precision": "fp32", "batch_size": 32}


def trainee(tiny_data, method: str = "awp", params: dict | None = None, **fields: object) -> tuple[Trainee, object]:
    cfg = build_config(method=method, dataset="cifar10", ur=10, preset="smoke", overrides=FIELDS | fields,
                       method_params=params)
    return build_trainee(cfg, tiny_data, torch.device("cpu")), cfg


def batch(tiny_data) -> tuple[Tensor, Tensor]:
    return tiny_data.x_train[:32].float() / 255, tiny_data.y_train[:32]


def perturbed_names(net: nn.Module) -> set[str]:
    return {n for n, w in net.state_dict().items() if w.dim() > 1 and "weight" in n}


def test_each_perturbed_layer_moves_by_gamma_times_its_norm(tiny_data) -> None:
    t, cfg = trainee(tiny_data, params={"gamma": 0.05})
    x, y = batch(tiny_data)
    before = {k: v.clone() for k, v in t.net.state_dict().items()}
    diff = t.awp.compute(t.net, lambda m: F.cross_entropy(m(x), y))
    assert set(diff) == perturbed_names(t.net) and len(diff) == 4  # three convs and the linear head
    t.awp.perturb(t.net, diff)
    after = t.net.state_dict()
    for name, w in before.items():
        if name in diff:
            assert (after[name] - w).norm() == pytest.approx(0.05 * w.norm().item(), rel=1e-5)
        else:
            assert torch.equal(after[name], w)  # biases, BatchNorm affine parameters and statistics
    t.awp.restore(t.net, diff)
    assert all(torch.allclose(after[k], before[k], atol=1e-7) for k in before)


def test_after_restore_the_weights_are_w_plus_the_update_at_the_perturbed_weights(tiny_data) -> None:
    """w + u, u = the optimiser's step (momentum, weight decay) from the gradient taken at w + gamma diff."""
    t, cfg = trainee(tiny_data, method="trades", awp_gamma=0.02)  # any method's outer loss
    x, y = batch(tiny_data)
    ref_net, ref_opt = copy.deepcopy(t.net), copy.deepcopy(t.optimizer)
    w = {k: v.clone() for k, v in t.net.named_parameters()}
    x_adv, _ = craft(cfg, t, x, y, torch.Generator().manual_seed(3))
    train_step(cfg, t, x, y, torch.Generator().manual_seed(3), EpochStats(10, x.device), 0)

    proxy = copy.deepcopy(ref_net)
    proxy.train()
    out_c, out_a = proxy(x), proxy(x_adv)
    ascent = -(F.cross_entropy(out_c, y) + 6.0 * F.kl_div(F.log_softmax(out_a, 1), F.softmax(out_c, 1),
                                                          reduction="batchmean"))
    ascent.backward()
    v = {}
    for name, p in proxy.named_parameters():
        if p.dim() > 1 and "weight" in name:
            step = -0.01 * p.grad
            v[name] = 0.02 * w[name].norm() / step.norm() * step
    ref_opt = torch.optim.SGD(ref_net.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    ref_opt.load_state_dict(t.optimizer.state_dict() | {"state": {}})
    with torch.no_grad():
        for name, p in ref_net.named_parameters():
            p.add_(v.get(name, torch.zeros_like(p)))
    ref_net.train()
    out_c, out_a = ref_net(x), ref_net(x_adv)
    loss = F.cross_entropy(out_c, y) + 6.0 * F.kl_div(F.log_softmax(out_a, 1), F.softmax(out_c, 1),
                                                      reduction="batchmean")
    ref_opt.zero_grad()
    loss.backward()
    perturbed = {k: p.detach().clone() for k, p in ref_net.named_parameters()}
    ref_opt.step()
    for name, p in t.net.named_parameters():
        u = ref_net.get_parameter(name).detach() - perturbed[name]
        assert torch.allclose(p.detach(), w[name] + u, atol=1e-6), name


# --- a direct transcription of the official AT-AWP step (AT_AWP/utils_awp.py, train_cifar10.py) ---------


def official_diff_in_weights(model: nn.Module, proxy: nn.Module) -> dict[str, Tensor]:
    diff = {}
    for (old_k, old_w), (_, new_w) in zip(model.state_dict().items(), proxy.state_dict().items(), strict=True):
        if len(old_w.size()) <= 1:
            continue
        if "weight" in old_k:
            diff_w = new_w - old_w
            diff[old_k] = old_w.norm() / (diff_w.norm() + 1e-20) * diff_w
    return diff


def official_add_into_weights(model: nn.Module, diff: dict[str, Tensor], coeff: float) -> None:
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name in diff:
                param.add_(coeff * diff[name])


def official_step(model: nn.Module, proxy: nn.Module, proxy_opt, opt, x_adv: Tensor, y: Tensor, gamma: float):
    proxy.load_state_dict(model.state_dict())
    proxy.train()
    loss = -F.cross_entropy(proxy(x_adv), y)
    proxy_opt.zero_grad()
    loss.backward()
    proxy_opt.step()
    diff = official_diff_in_weights(model, proxy)
    official_add_into_weights(model, diff, 1.0 * gamma)
    model.train()
    robust_loss = F.cross_entropy(model(x_adv), y)
    opt.zero_grad()
    robust_loss.backward()
    opt.step()
    official_add_into_weights(model, diff, -1.0 * gamma)


def test_one_core_step_equals_the_official_step(tiny_data) -> None:
    t, cfg = trainee(tiny_data)
    x, y = batch(tiny_data)
    model = copy.deepcopy(t.net)
    proxy = copy.deepcopy(t.net)
    proxy_opt = torch.optim.SGD(proxy.parameters(), lr=0.01)
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    for _ in range(2):  # the second step has momentum
        x_adv, _ = craft(cfg, t, x, y, torch.Generator().manual_seed(5))
        train_step(cfg, t, x, y, torch.Generator().manual_seed(5), EpochStats(10, x.device), 0)
        official_step(model, proxy, proxy_opt, opt, x_adv, y, gamma=0.01)
        for (name, mine), theirs in zip(t.net.state_dict().items(), model.state_dict().values(), strict=True):
            assert torch.allclose(mine, theirs, atol=1e-6), name


def test_warmup_epochs_train_without_the_perturbation(tiny_data) -> None:
    t, _ = trainee(tiny_data, method="pgd-at", awp_gamma=0.01, awp_warmup=2)
    assert not t.awp.active
    t.awp.begin_epoch(1)
    assert not t.awp.active
    t.awp.begin_epoch(2)
    assert t.awp.active
    assert trainee(tiny_data, method="pgd-at")[0].awp is None


def test_settings_and_run_ids() -> None:
    assert WeightPerturbation(nn.Linear(2, 2), AWPSettings(0.01)).active
    with pytest.raises(InputError, match="already perturbs weights"):
        build_config(method="awp", overrides={"awp_gamma": 0.01})
    with pytest.raises(InputError, match="awp.gamma"):
        build_config(method="awp", method_params={"gamma": -1})
    plain = build_config(method="pgd-at")
    assert "awp_gamma" not in plain.identity() and "attack_bn" not in plain.identity()
    assert build_config(method="pgd-at", overrides={"awp_gamma": 0.01}).run_id != plain.run_id
    assert build_config(method="pgd-at", overrides={"attack_bn": "train"}).run_id != plain.run_id


class KillAfterFirstEpoch(Progress):
    """Simulates a kill right after the first epoch's checkpoint was written."""

    def log(self, message: str) -> None:
        raise KeyboardInterrupt


@pytest.mark.slow
def test_awp_robustlt_and_train_bn_run_resumes_to_the_same_numbers(tmp_path, tiny_data) -> None:
    cfg = build_config(method="robustlt+pgd-at", dataset="cifar10", ur=10, preset="smoke",
                       overrides=FIELDS | {"epochs": 2, "epoch_eval_n": 20, "awp_gamma": 0.01, "attack_bn": "train",
                                           "steps": 1})
    cpu = torch.device("cpu")
    train(cfg, tiny_data, tmp_path / "straight", cpu, Progress(False))
    with pytest.raises(KeyboardInterrupt):
        train(cfg, tiny_data, tmp_path / "killed", cpu, KillAfterFirstEpoch(False))
    train(cfg, tiny_data, tmp_path / "killed", cpu, Progress(False))
    runs = ("straight", "killed")
    strip = [[{k: v for k, v in json.loads(line).items() if k != "seconds"}
              for line in (tmp_path / run / "metrics.jsonl").read_text().splitlines()] for run in runs]
    assert strip[0] == strip[1] and len(strip[0]) == 2
    wa, wb = (store.load_checkpoint(tmp_path / run / "ckpt" / "last.pt")["model"] for run in runs)
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
