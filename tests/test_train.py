"""Training core: determinism, resume after a kill, NaN guard, PGD raises the loss."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import train_with_validation as train

from bench.core import store
from bench.core.errors import BenchError
from bench.core.progress import Progress
from bench.training.config import build_config
from bench.training.loop import lr_at

TINY_FIELDS = {"epochs": 2, "steps": 1, "batch_size": 32, "epoch_eval_n": 20}


def tiny_config(**fields):
    return build_config(method="pgd-at", dataset="cifar10", ur=10, preset="smoke", overrides=TINY_FIELDS | fields)




def weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return store.load_checkpoint(run_dir / "ckpt" / "last.pt")["model"]


@pytest.mark.slow
def test_same_seed_same_numbers(tmp_path, tiny_data):
    cfg = tiny_config()
    for name in ("a", "b"):
        train(cfg, tiny_data, tmp_path / name, torch.device("cpu"), Progress(False))
    metrics = [(tmp_path / n / "metrics.jsonl").read_text().splitlines() for n in ("a", "b")]
    strip = [[{k: v for k, v in json.loads(line).items() if k != "seconds"} for line in m] for m in metrics]
    assert strip[0] == strip[1]
    wa, wb = weights(tmp_path / "a"), weights(tmp_path / "b")
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


class KillAfterFirstEpoch(Progress):
    """Simulates a kill right after the first epoch's checkpoint was written."""

    def log(self, message: str) -> None:
        raise KeyboardInterrupt


@pytest.mark.slow
def test_resume_after_kill_gives_the_same_final_numbers(tmp_path, tiny_data):
    cfg = tiny_config()
    train(cfg, tiny_data, tmp_path / "straight", torch.device("cpu"), Progress(False))
    with pytest.raises(KeyboardInterrupt):
        train(cfg, tiny_data, tmp_path / "killed", torch.device("cpu"), KillAfterFirstEpoch(False))
    assert len((tmp_path / "killed" / "metrics.jsonl").read_text().splitlines()) == 1
    train(cfg, tiny_data, tmp_path / "killed", torch.device("cpu"), Progress(False))
    lines = [json.loads(x) for x in (tmp_path / "killed" / "metrics.jsonl").read_text().splitlines()]
    straight = [json.loads(x) for x in (tmp_path / "straight" / "metrics.jsonl").read_text().splitlines()]
    assert [m["epoch"] for m in lines] == [0, 1]
    assert [m["loss"] for m in lines] == [m["loss"] for m in straight]
    assert [m["test_pgd20_acc"] for m in lines] == [m["test_pgd20_acc"] for m in straight]
    wa, wb = weights(tmp_path / "straight"), weights(tmp_path / "killed")
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


@pytest.mark.slow
def test_metrics_lines_have_the_documented_fields(tmp_path, tiny_data):
    train(tiny_config(epochs=1), tiny_data, tmp_path, torch.device("cpu"), Progress(False))
    (line,) = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    for key in ("epoch", "loss", "train_clean_acc", "train_adv_acc", "ae_pred_hist", "ae_pred_entropy",
                "test_clean_acc", "test_pgd20_acc", "lr", "seconds", "attack_steps"):
        assert key in line
    assert sum(line["ae_pred_hist"]) == sum(tiny_data.class_counts)
    assert (tmp_path / "ckpt" / "best.pt").exists()


@pytest.mark.slow
def test_nan_loss_stops_with_a_clear_error(tmp_path, tiny_data, monkeypatch):
    from methods.pgd_at import PGDAT

    monkeypatch.setattr(PGDAT, "train_loss", lambda self, out, y, clean=None: out.logits.sum() * float("nan"))
    with pytest.raises(BenchError, match="loss became nan in epoch 1, batch 1"):
        train(tiny_config(), tiny_data, tmp_path, torch.device("cpu"), Progress(False))


def test_step_schedule_matches_official_milestones():
    cfg = build_config(method="pgd-at", dataset="cifar10", preset="paper")
    assert cfg.milestones == (60, 75)
    assert [lr_at(cfg, e) for e in (0, 59, 60, 74, 75, 79)] == pytest.approx([0.1, 0.1, 0.01, 0.01, 0.001, 0.001])
