"""`bench perf`: the reference loop computes the same step as the real core, and the command prints ratios."""

import json

import pytest
import torch
from click.testing import CliRunner

from bench.cli import main
from bench.data.images import to_float
from bench.perf.benchmark import reference_loop, synthetic_data
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


def test_perf_rejects_a_method_without_reference():
    result = CliRunner().invoke(main, ["perf", "--synthetic", "--method", "robal", "--batches", "1"])
    assert result.exit_code != 0 and "reference loop covers" in result.output


def test_synthetic_test_set_has_the_asked_images() -> None:
    data = synthetic_data("cifar10", 100, torch.device("cpu"), n_test=1203)
    counts = torch.bincount(data.y_test, minlength=10)
    assert data.y_test.numel() >= 1203 and bool((counts == counts[0]).all())
    assert data.x_test.shape[0] == data.y_test.numel()
