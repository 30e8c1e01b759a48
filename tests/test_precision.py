"""Precision setting, BN folding, channels-last and the training step's freedom from host syncs."""

from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner
from conftest import train_with_validation as train

import bench.core.precision as precision
from bench.cli import main
from bench.core import store
from bench.core.errors import BenchError, InputError
from bench.core.progress import Progress
from bench.data.images import to_float
from bench.grid.spec import expand, parse_grid
from bench.models import ARCHS, build_model
from bench.training.config import build_config
from bench.training.fold import fold_batchnorm
from bench.training.layout import memory_format, sgd_kernel
from bench.training.loop import EpochStats, build_trainee, train_step

TINY_FIELDS = {"epochs": 1, "steps": 1, "batch_size": 32, "epoch_eval_n": 20}




@pytest.mark.parametrize(("device", "cpu_bf16", "cuda_bf16", "expected"), [
    ("cpu", True, False, "bf16"), ("cpu", False, True, "fp32"), ("cuda", False, True, "fp32"),
    ("cuda", True, True, "fp32"),
])
def test_auto_precision_picks_what_was_measured_faster(monkeypatch, device, cpu_bf16, cuda_bf16, expected):
    monkeypatch.setattr(precision, "cpu_has_bf16", lambda: cpu_bf16)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: cuda_bf16)
    assert precision.resolve_precision("auto", device) == expected
    assert precision.resolve_precision("fp32", device) == "fp32"
    assert precision.resolve_precision("bf16", device) == "bf16"


def test_auto_is_hashed_as_asked_not_as_resolved(monkeypatch):
    ids = set()
    for bf16 in (False, True):
        monkeypatch.setattr(precision, "cpu_has_bf16", lambda bf16=bf16: bf16)
        auto = build_config(method="reat")
        assert auto.precision == "auto"
        ids.add(auto.run_id)
    assert len(ids) == 1
    fp32 = build_config(method="reat", overrides={"precision": "fp32"})
    bf16 = build_config(method="reat", overrides={"precision": "bf16"})
    assert len({fp32.run_id, bf16.run_id, *ids}) == 3
    with pytest.raises(InputError, match="precision must be one of"):
        build_config(method="reat", overrides={"precision": "fp16"})
    with pytest.raises(InputError, match="compile must be true or false"):
        build_config(method="reat", overrides={"compile": "yes"})


def test_grid_set_precision_reaches_every_run():
    grid = 'datasets = ["cifar10"]\narchs = ["cnn-small"]\nurs = [10]\nmethods = ["pgd-at", "reat"]\n'
    spec = parse_grid(grid + '[set]\nprecision = "bf16"\n', "inline")
    assert {cfg.precision for cfg in expand(spec)} == {"bf16"}


@pytest.mark.slow
def test_run_records_the_precision_it_trains_in_and_trains_in_bf16(tmp_path, tiny_args):
    out = tmp_path / "res"
    small = ["--eval-n", "10", "--set", "epoch_eval_n=10"]
    result = CliRunner().invoke(main, ["run", "--out", str(out), "--precision", "bf16", *tiny_args, *small])
    assert result.exit_code == 0, result.output
    (run_dir,) = out.iterdir()
    assert store.read_json(run_dir / store.CONFIG_FILE)["config"]["precision"] == "bf16"
    assert [e["precision"] for e in store.read_jsonl(run_dir / store.METRICS_FILE)] == ["bf16"]
    assert store.trained_precision(run_dir) == "bf16"
    evaluated = store.read_json(run_dir / "eval.json")["attacks"]
    assert "precision" not in evaluated["pgd20"]["params"]  # the final evaluation stays fp32
    result = CliRunner().invoke(main, ["eval", str(run_dir), "--precision", "bf16", "--no-progress",
                                       "--data-root", tiny_args[1]])
    assert result.exit_code == 0, result.output
    record = store.read_json(run_dir / "eval.json")
    assert record["attacks"] == evaluated, "a bf16 evaluation keeps the fp32 results"
    (bf16,) = record["protocols"]
    assert bf16["precision"] == "bf16" and bf16["attacks"]["pgd20"]["params"]["precision"] == "bf16"


def test_bf16_step_keeps_weights_optimiser_state_and_bn_statistics_fp32(tiny_data):
    cfg = build_config(method="reat", dataset="cifar10", ur=10, preset="smoke",
                       overrides=TINY_FIELDS | {"precision": "bf16"})
    trainee = build_trainee(cfg, tiny_data, torch.device("cpu"))
    stats = EpochStats(tiny_data.num_classes, torch.device("cpu"))
    x, y = to_float(tiny_data.x_train[:32]), tiny_data.y_train[:32]
    train_step(cfg, trainee, x, y, torch.Generator().manual_seed(0), stats, 0)
    assert torch.isfinite(stats.loss_sum)
    assert all(t.dtype == torch.float32 for t in trainee.net.state_dict().values() if t.is_floating_point())
    momenta = [s["momentum_buffer"] for s in trainee.optimizer.state.values()]
    assert momenta and all(m.dtype == torch.float32 for m in momenta)


@pytest.mark.parametrize("arch", ["cnn-small", "resnet18", "preact-resnet18"])
def test_folded_twin_computes_the_net_and_follows_its_updates(arch):
    torch.manual_seed(0)
    net = build_model(arch, 3, lambda d: torch.nn.Linear(d, 10))
    net(torch.rand(8, 3, 32, 32))  # train mode: BN statistics move away from their initial values
    net.eval()
    twin = fold_batchnorm(net)
    x = torch.rand(4, 3, 32, 32)
    assert torch.allclose(twin(x), net(x), atol=1e-5)
    with torch.no_grad():
        for p in net.parameters():
            p.mul_(1.1)
    twin.refresh()
    assert torch.allclose(twin(x), net(x), atol=1e-5)
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in net.modules())  # the live net keeps its BN
    folded = [twin.graph_module.get_submodule(conv) for conv, _ in twin.pairs]
    assert folded and all(not p.requires_grad for conv in folded for p in conv.parameters())


def test_layout_choices():
    assert set(ARCHS) >= {a for a in ARCHS if memory_format(a) == torch.channels_last}
    assert sgd_kernel(torch.device("cpu")) == {"fused": True}
    assert sgd_kernel(torch.device("meta")) == {"foreach": True}


def test_training_step_never_waits_for_the_host(tiny_data, monkeypatch):
    """No .item(), .tolist() or Python branch on a tensor value inside the attack or the update."""
    cfg = build_config(method="reat", dataset="cifar10", ur=10, preset="smoke", overrides=TINY_FIELDS)
    trainee = build_trainee(cfg, tiny_data, torch.device("cpu"))
    stats = EpochStats(tiny_data.num_classes, torch.device("cpu"))
    x, y = to_float(tiny_data.x_train[-32:]), tiny_data.y_train[-32:]

    def sync(*args, **kwargs):
        raise AssertionError("host synchronisation inside the training step")

    for name in ("item", "tolist", "__bool__", "__int__", "__float__", "__index__", "nonzero", "cpu"):
        monkeypatch.setattr(torch.Tensor, name, sync)
    train_step(cfg, trainee, x, y, torch.Generator().manual_seed(0), stats, 0)
    monkeypatch.undo()
    assert stats.hist.sum().item() == 32


@pytest.mark.slow
def test_nan_names_epoch_and_batch_and_keeps_the_last_good_checkpoint(tmp_path, tiny_data, monkeypatch):
    from methods.pgd_at import PGDAT

    cfg = build_config(method="pgd-at", dataset="cifar10", ur=10, preset="smoke",
                       overrides=TINY_FIELDS | {"epochs": 2})
    train(build_config(method="pgd-at", dataset="cifar10", ur=10, preset="smoke", overrides=TINY_FIELDS),
          tiny_data, tmp_path, torch.device("cpu"), Progress(False))  # epoch 1 of the 2-epoch config, below
    good = json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[0])
    state = store.load_checkpoint(tmp_path / "ckpt" / "last.pt", torch.device("cpu"))
    state_weights = {k: v.clone() for k, v in state["model"].items()}
    calls = {"n": 0}
    original = PGDAT.train_loss

    def nan_from_third_batch(self, out, y, clean=None):
        calls["n"] += 1
        loss = original(self, out, y, clean)
        return loss * float("nan") if calls["n"] >= 3 else loss

    monkeypatch.setattr(PGDAT, "train_loss", nan_from_third_batch)
    with pytest.raises(BenchError, match=r"loss became nan in epoch 2, batch 3;"):
        train(cfg, tiny_data, tmp_path, torch.device("cpu"), Progress(False))
    after = store.load_checkpoint(tmp_path / "ckpt" / "last.pt", torch.device("cpu"))
    assert after["epoch"] == good["epoch"]
    assert all(torch.equal(after["model"][k], v) for k, v in state_weights.items())
