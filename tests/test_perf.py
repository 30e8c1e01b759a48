"""`bench perf`: the baselines it times compute the same thing as ltbench's versions."""

import torch
from click.testing import CliRunner

from bench.cli import main
from bench.perf import tail_per_anchor_loop
from methods.tail_loss import tail_official


def test_tail_loop_baseline_equals_vectorised_tail():
    gen = torch.Generator().manual_seed(0)
    features = torch.randn(24, 16, generator=gen)
    y = torch.randint(0, 10, (24,), generator=gen)
    counts = torch.tensor([50, 40, 30, 20, 15, 10, 8, 6, 4, 2], dtype=torch.float32)
    assert torch.allclose(tail_per_anchor_loop(features, y, counts), tail_official(features, y, counts), atol=1e-7)


def test_perf_command_prints_ratios():
    result = CliRunner().invoke(main, ["perf", "--quick"])
    assert result.exit_code == 0, result.output
    assert "data pipeline" in result.output and "TAIL" in result.output and "x" in result.output
    assert "augmentation vs the attack" in result.output
