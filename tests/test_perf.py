"""`bench perf`: the reference loop computes the same step as the real core, and the command prints ratios, the
evaluator's rate per attack (--eval) and runs per hour against local workers (--packing)."""

import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from torch import Tensor

import bench.evaluation.suite as ev
from bench.cli import main
from bench.data.cifar import write_synthetic_cifar10
from bench.data.datasets import load_dataset
from bench.data.images import to_float
from bench.grid.packing import PackingProtocol
from bench.models.inference import InferenceModel
from bench.perf.benchmark import eval_throughput, reference_loop, synthetic_data, untrained_model
from bench.perf.reference import PerImageDataset, tail_per_anchor_loop
from bench.training.config import build_config
from bench.training.loop import EpochStats, build_trainee, train_step
from methods.tail_loss import tail_official


def test_tail_loop_baseline_equals_vectorised_tail():
    gen = torch.Generator().manual_seed(0)
    features = torch.randn(24, 16, generator=gen)
    y = torch.randint(0, 10, (24,), generator=gen)
    counts = torch.tensor([50, 40, 30, 20, 15, 10, 8, 6, 4, 2], dtype=torch.float32)
    assert torch.allclose(tail_per_anchor_loop(features, y, counts), tail_official(features, y, counts), atol=1e-7)


def test_per_image_transforms_give_the_core_s_float_images(tiny_data):
    x, _ = PerImageDataset(tiny_data.x_train[:4], tiny_data.y_train[:4], "none")[3]
    assert torch.allclose(x, to_float(tiny_data.x_train[3]), atol=1e-7)


@pytest.mark.parametrize("method", ["pgd-at", "reat", "rbl"])
def test_reference_step_matches_the_real_step_in_fp32(tiny_data, method):
    cfg = build_config(method=method, dataset="cifar10", ur=10, preset="smoke",
                       overrides={"precision": "fp32", "batch_size": 32, "steps": 3, "augment": "none"})
    trainee = build_trainee(cfg, tiny_data, torch.device("cpu"))
    loop = reference_loop(cfg, tiny_data, torch.device("cpu"))
    before = {k: v.clone() for k, v in loop.net.state_dict().items()}
    assert all(torch.equal(before[k], v) for k, v in trainee.net.state_dict().items())
    y = tiny_data.y_train[-32:]  # the tail end: TAIL anchors in the batch
    x = to_float(tiny_data.x_train[-32:])
    stats = EpochStats(tiny_data.num_classes, torch.device("cpu"))
    train_step(cfg, trainee, x, y, torch.Generator().manual_seed(5), stats, 0)
    ref_loss = loop.step(x, y, torch.Generator().manual_seed(5))
    assert stats.loss_sum.item() / y.numel() == pytest.approx(ref_loss, rel=1e-5)
    real_after, ref_after = trainee.net.state_dict(), loop.net.state_dict()
    for key, start in before.items():
        if start.is_floating_point():
            real_delta, ref_delta = real_after[key] - start, ref_after[key] - start
            assert torch.allclose(real_delta, ref_delta, rtol=1e-4, atol=1e-6), key
    assert stats.hist.tolist() == loop.pred_counts


@pytest.mark.slow
def test_perf_command_prints_the_ratio_and_json():
    runner = CliRunner()
    args = ["perf", "--synthetic", "--dataset", "cifar10", "--batches", "1", "--batch-size", "8", "--preset",
            "smoke", "--precision", "fp32"]
    result = runner.invoke(main, [*args, "--augment", "ra-crop-flip"])
    assert result.exit_code == 0, result.output
    assert "speed-up" in result.output and "PGD-20" in result.output
    assert "ra-crop-flip augmentation:" in result.output
    result = runner.invoke(main, [*args, "--json", "--method", "pgd-at"])
    assert result.exit_code == 0, result.output
    record = json.loads(result.output)
    assert record["ratio"] == pytest.approx(record["real"]["images_per_s"] / record["reference"]["images_per_s"])
    assert record["reference"]["images_per_s"] > 0 and record["pgd20_images_per_s"] > 0


@pytest.mark.slow
def test_perf_times_the_core_with_cuda_graphs():
    args = ["perf", "--synthetic", "--dataset", "cifar10", "--batches", "1", "--batch-size", "8", "--preset", "smoke",
            "--precision", "fp32", "--eval-images", "16", "--cuda-graph"]
    result = CliRunner().invoke(main, [*args, "--json"])
    assert result.exit_code == 0, result.output
    record = json.loads(result.output)
    assert record["cuda_graph"] is True and record["real"]["images_per_s"] > 0 and record["pgd20_images_per_s"] > 0
    assert "ltbench core (CUDA graphs)" in CliRunner().invoke(main, args).output


def test_a_method_without_reference_loop_is_timed_in_the_real_core_alone():
    args = ["perf", "--synthetic", "--method", "robal", "--batches", "1", "--preset", "smoke", "--eval-images", "0"]
    result = CliRunner().invoke(main, [*args, "--json"])
    assert result.exit_code == 0, result.output
    record = json.loads(result.output)
    assert record["reference"] is None and record["ratio"] is None and record["real"]["images_per_s"] > 0
    assert "covers pgd-at, rbl, tail, reat only" in CliRunner().invoke(main, args).output


def test_synthetic_test_set_has_the_asked_images() -> None:
    data = synthetic_data("cifar10", 100, torch.device("cpu"), n_test=1203)
    counts = torch.bincount(data.y_test, minlength=10)
    assert data.y_test.numel() >= 1203 and bool((counts == counts[0]).all())
    assert data.x_test.shape[0] == data.y_test.numel()


#: `bench perf` on one tiny batch (the training step part of every --eval test)
TINY_STEP = ["perf", "--batches", "1", "--batch-size", "8", "--preset", "smoke", "--precision", "fp32", "--json"]


def test_eval_times_each_attack_through_the_evaluator():
    args = [*TINY_STEP, "--synthetic", "--eval", "--eval-attacks", "pgd20,cw100", "--eval-images", "4"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    record = json.loads(result.output)
    block = record["eval"]
    assert list(block["attacks"]) == ["pgd20", "cw100"] and block["images"] == 10  # stratified: ceil(4/10) a class
    assert block["model"].startswith("the untrained cnn-small") and 0 <= block["clean_acc"] <= 1
    for timing in block["attacks"].values():
        assert timing["images_per_s"] > 0 and timing["seconds"] > 0 and timing["attacked"] == block["images"]
    assert record["pgd20_images_per_s"] == block["attacks"]["pgd20"]["images_per_s"]


def test_eval_needs_test_images():
    result = CliRunner().invoke(main, [*TINY_STEP, "--synthetic", "--eval", "--eval-images", "0"])
    assert result.exit_code != 0 and "--eval-images" in result.output


def test_autoattack_rate_counts_the_images_it_attacks(tiny_data, monkeypatch):
    """AutoAttack attacks only the clean-correct images: ``attacked`` is their number (AutoAttack faked)."""
    seen: list[int] = []

    def every_image_wrong(model: InferenceModel, x: Tensor, y: Tensor, params: dict) -> Tensor:
        seen.append(y.numel())
        return (y + 1) % 10

    monkeypatch.setattr(ev, "autoattack_predictions", every_image_wrong)
    cfg = build_config(method="pgd-at", dataset="cifar10", ur=10, preset="smoke")
    model = untrained_model(cfg, tiny_data, torch.device("cpu"))
    block = eval_throughput(model, tiny_data, ("aa",), 20, eps=cfg.eps, step_size=cfg.step_size, seed=0,
                            source="untrained")
    correct = round(block["clean_acc"] * 20)
    aa = block["attacks"]["aa"]
    assert aa["attacked"] == correct and aa["acc"] == 0.0 and aa["images"] == 20 and aa["images_per_s"] > 0
    assert seen == [16, 20], "one warm-up call, then the timed one over every image"


@pytest.mark.slow
def test_eval_run_times_a_finished_run(tmp_path, tiny_args, cifar_root):
    out = tmp_path / "results"
    trained = CliRunner().invoke(main, ["run", "--methods", "pgd-at", "--out", str(out), *tiny_args])
    assert trained.exit_code == 0, trained.output
    (run_dir,) = out.iterdir()
    args = [*TINY_STEP, "--eval-run", str(run_dir), "--eval-attacks", "pgd20", "--eval-images", "10",
            "--data-root", str(cifar_root)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    record = json.loads(result.output)
    assert record["method"] == "pgd-at" and record["dataset"] == "cifar10"
    assert record["eval"]["model"] == f"run {run_dir.name}, last checkpoint (epoch 1)"
    assert record["eval"]["attacks"]["pgd20"]["images_per_s"] > 0
    synthetic = CliRunner().invoke(main, [*args, "--synthetic"])
    assert synthetic.exit_code != 0 and "drop --synthetic" in synthetic.output


@pytest.mark.slow
def test_packing_measures_runs_per_hour(cifar_root):
    args = ["perf", "--packing", "--workers", "1,2", "--packing-runs-per-worker", "1", "--packing-preset", "smoke",
            "--packing-epochs", "1", "--method", "pgd-at", "--dataset", "cifar10", "--ur", "10",
            "--data-root", str(cifar_root), "--json"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)["packing"]
    assert [(r["workers"], r["runs"]) for r in record["results"]] == [(1, 1), (2, 2)]
    assert all(r["runs_per_hour"] > 0 and r["seconds"] > 0 for r in record["results"])
    assert record["results"][0]["speedup"] == 1.0 and record["baseline_workers"] == 1


def test_packing_runs_have_distinct_seeds_and_the_asked_protocol():
    protocol = PackingProtocol("pgd-at", "cnn-small", "cifar10", 10, "quick", epochs=2, suite="fast")
    configs = protocol.configs(3)
    assert [c.seed for c in configs] == [0, 1, 2] and len({c.run_id for c in configs}) == 3
    assert all(c.epochs == 2 and c.preset == "quick" for c in configs)
    assert protocol.evaluation().attacks == ("clean", "pgd20") and protocol.evaluation().n == 1000


def test_packing_synthetic_needs_cifar10():
    result = CliRunner().invoke(main, ["perf", "--packing", "--synthetic", "--dataset", "fashion-mnist"])
    assert result.exit_code != 0 and "--dataset cifar10" in result.output


def test_synthetic_cifar10_files_load_through_the_real_loader(tmp_path: Path):
    root = write_synthetic_cifar10(tmp_path, train_per_class=3, test_per_class=2, seed=1)
    assert sorted(p.name for p in (root / "cifar-10-batches-py").iterdir()) == [
        "batches.meta", "data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5", "test_batch"]
    data = load_dataset("cifar10", root, download=False)
    assert data.x_train.shape == (30, 3, 32, 32) and data.x_test.shape == (20, 3, 32, 32)
    assert data.x_train.dtype == torch.uint8 and torch.bincount(data.y_train).tolist() == [3] * 10
