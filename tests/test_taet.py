"""TAET: HARL against hand-computed values, its per-class gradient weights, the stage switch and resume."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from conftest import train_with_validation as train

from bench.core import store
from bench.core.errors import InputError
from bench.core.progress import Progress
from bench.training.config import build_config
from methods import get_method
from methods.taet import harl_loss, harl_terms, stage_switch_epoch

ALPHA = BETA = GAMMA = 0.1


def test_harl_terms_by_hand_with_an_absent_class():
    # C = 4, class 2 absent: L = [(1 + 3) / 2, 2, 0, 4] = [2, 2, 0, 4], mean 2, sum 8
    losses, y = torch.tensor([1.0, 3.0, 2.0, 4.0]), torch.tensor([0, 0, 1, 3])
    terms = harl_terms(losses, y, 4)
    assert terms["bcl"].item() == pytest.approx(2.0)
    assert terms["hdl"].item() == pytest.approx((0 + 0 + 4 + 4) / 4)
    assert terms["rcel"].item() == pytest.approx(0.25 ** 2 + 0.25 ** 2 + 0 + 0.5 ** 2)


def test_harl_loss_on_logits_by_hand():
    # 3 classes, class 1 absent; CE of logits (a, 0, 0) for label 0 is log(e^a + 2) - a
    logits = torch.tensor([[2.0, 0.0, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    y = torch.tensor([0, 0, 2])
    ce = [math.log(math.exp(2) + 2) - 2, math.log(3), math.log(math.exp(1) + 2) - 1]
    class_loss = [(ce[0] + ce[1]) / 2, 0.0, ce[2]]
    mean, total = sum(class_loss) / 3, sum(class_loss)
    expected = (ALPHA * mean + BETA * sum((c - mean) ** 2 for c in class_loss) / 3
                + GAMMA * sum((c / total) ** 2 for c in class_loss))
    assert harl_loss(logits, y).item() == pytest.approx(expected, rel=1e-6)
    assert harl_loss(logits, y, alpha=1.0, beta=0.0, gamma=0.0).item() == pytest.approx(mean, rel=1e-6)


def expected_weights(losses: list[float], y: list[int], num_classes: int) -> list[float]:
    """Sec. 7.3: dHARL/dl_i = (alpha/C + 2 beta/C (L_c - Lbar) + 2 gamma/S (s_c - sum_j s_j^2)) / m_c."""
    counts = [y.count(c) for c in range(num_classes)]
    class_loss = [sum(li for li, yi in zip(losses, y, strict=True) if yi == c) / counts[c] if counts[c] else 0.0
                  for c in range(num_classes)]
    mean, total = sum(class_loss) / num_classes, sum(class_loss)
    shares = [c / total for c in class_loss]
    concentration = sum(s * s for s in shares)
    per_class = [ALPHA / num_classes + 2 * BETA / num_classes * (class_loss[c] - mean)
                 + 2 * GAMMA / total * (shares[c] - concentration) for c in range(num_classes)]
    return [per_class[c] / counts[c] for c in y]


def test_per_class_gradient_weights_include_a_negative_weight_for_a_well_fitted_class():
    # class 0 is fitted (tiny loss), classes 1 and 2 are not, class 3 is absent
    raw, labels = [0.01, 0.02, 0.015, 3.0, 2.5, 3.2], [0, 0, 0, 1, 1, 2]
    losses = torch.tensor(raw, requires_grad=True)
    terms = harl_terms(losses, torch.tensor(labels), 4)
    (ALPHA * terms["bcl"] + BETA * terms["hdl"] + GAMMA * terms["rcel"]).backward()
    weights = expected_weights(raw, labels, 4)
    assert losses.grad.tolist() == pytest.approx(weights, rel=1e-5)
    assert all(w < 0 for w in losses.grad[:3])  # HARL pushes the fitted class's loss up
    assert all(w > 0 for w in losses.grad[3:])
    # each present class gets the same total weight whatever its batch count (up to the L_c terms)
    assert losses.grad[3:5].sum().item() == pytest.approx(weights[3] * 2, rel=1e-5)


def test_stage_switch_epoch_and_attributes():
    assert stage_switch_epoch(0.4, 100) == 40 and stage_switch_epoch(0.4, 10) == 4
    cls = get_method("taet")
    method = cls(cls.resolve_params({}, "cifar10"), [5, 3, 1])
    stages = []
    for epoch in range(10):
        method.begin_epoch(epoch, 10)
        stages.append((method.attack_steps, method.needs_clean_output))
    assert stages == [(0, False)] * 4 + [(None, True)] * 6
    off = cls(cls.resolve_params({"clean_bn_pass": False}, "cifar10"), [5, 3, 1])
    off.begin_epoch(9, 10)
    assert (off.attack_steps, off.needs_clean_output) == (None, False)
    with pytest.raises(InputError, match="ce_fraction"):
        cls.resolve_params({"ce_fraction": 1.5}, "cifar10")


def test_stage_one_is_clean_cross_entropy():
    cls = get_method("taet")
    method = cls(cls.resolve_params({}, "cifar10"), [5, 3, 1])
    method.begin_epoch(0, 10)
    from methods.base import Output

    logits, y = torch.randn(4, 3), torch.tensor([0, 1, 2, 0])
    out = Output(torch.randn(4, 8), logits)
    assert method.train_loss(out, y).item() == pytest.approx(torch.nn.functional.cross_entropy(logits, y).item())
    method.begin_epoch(4, 10)
    assert method.train_loss(out, y).item() == pytest.approx(harl_loss(logits, y).item())


# --- in the training core ------------------------------------------------------------------------------

FIELDS = {"epochs": 3, "steps": 1, "batch_size": 32, "epoch_eval_n": 20}




class KillAfterFirstEpoch(Progress):
    def log(self, message: str) -> None:
        raise KeyboardInterrupt


def metrics(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_core_runs_no_attack_in_stage_one_and_resumes_into_stage_two(tmp_path, tiny_data, monkeypatch):
    import bench.training.loop

    cfg = build_config(method="taet", dataset="cifar10", ur=10, preset="smoke", overrides=FIELDS,
                       method_params={"ce_fraction": 0.4})  # round(1.2) = 1: epoch 0 clean, 1-2 HARL
    calls: list[int] = []
    real_pgd = bench.training.loop.pgd

    def counting_pgd(*args, **kwargs):
        calls.append(kwargs["steps"])
        return real_pgd(*args, **kwargs)

    monkeypatch.setattr(bench.training.loop, "pgd", counting_pgd)
    cpu = torch.device("cpu")
    train(cfg, tiny_data, tmp_path / "straight", cpu, Progress(False))
    batches = -(-sum(tiny_data.class_counts) // 32)
    assert calls == [1] * (2 * batches)  # no attack in epoch 0
    assert [m["attack_steps"] for m in metrics(tmp_path / "straight")] == [0, 1, 1]

    with pytest.raises(KeyboardInterrupt):
        train(cfg, tiny_data, tmp_path / "killed", cpu, KillAfterFirstEpoch(False))
    train(cfg, tiny_data, tmp_path / "killed", cpu, Progress(False))
    resumed, straight = metrics(tmp_path / "killed"), metrics(tmp_path / "straight")
    assert [m["attack_steps"] for m in resumed] == [0, 1, 1]
    assert [m["loss"] for m in resumed] == [m["loss"] for m in straight]
    wa = store.load_checkpoint(tmp_path / "straight" / "ckpt" / "last.pt")["model"]
    wb = store.load_checkpoint(tmp_path / "killed" / "ckpt" / "last.pt")["model"]
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
