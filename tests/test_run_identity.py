"""Run identity does not depend on the machine: the same grid gives the same run ids on an AVX2-only CPU,
a bf16 CPU and a CUDA GPU, and the committed results are recognised as done on each of them."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

import bench.core.precision as precision
from bench.cli import main
from bench.core import store
from bench.core.errors import BenchError
from bench.core.progress import Progress
from bench.grid.spec import expand, load_grid
from bench.training.config import build_config
from bench.training.loop import resumed_precision

ROOT = Path(__file__).resolve().parents[1]
#: shipped grid -> (committed results folder, committed runs of that grid)
COMMITTED = {"fmnist-reference": ("results/reference", 72), "fmnist-ur-sweep": ("results/reference", 28),
             "rbl-logit": ("results/reference", 10), "robustlt-parts": ("results/reference", 9),
             "bf16-numerics": ("results/bf16-numerics", 12)}
MACHINES = {"avx2 cpu": (False, False), "bf16 cpu": (True, False), "cuda gpu": (False, True)}


@pytest.fixture(params=list(MACHINES))
def machine(request, monkeypatch):
    """Pretend to be one of the machines: the CPU's bf16 capability probe and a CUDA device."""
    cpu_bf16, cuda = MACHINES[request.param]
    monkeypatch.setattr(precision, "cpu_has_bf16", lambda: cpu_bf16)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: cuda)
    return request.param


def grid_ids(name: str) -> list[str]:
    return [cfg.run_id for cfg in expand(load_grid(name))]


def test_run_ids_are_the_same_on_every_machine(monkeypatch):
    seen = {}
    for cpu_bf16, cuda in MACHINES.values():
        monkeypatch.setattr(precision, "cpu_has_bf16", lambda v=cpu_bf16: v)
        monkeypatch.setattr(torch.cuda, "is_available", lambda v=cuda: v)
        monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda v=cuda: v)
        for name in (*COMMITTED, "fmnist-quick", "paper-main"):
            seen.setdefault(name, set()).add(tuple(grid_ids(name)))
    assert all(len(ids) == 1 for ids in seen.values())


@pytest.mark.parametrize("name", list(COMMITTED))
def test_committed_runs_are_done_on_every_machine(machine, name):
    folder, count = COMMITTED[name]
    statuses = [store.run_status(ROOT / folder / run_id) for run_id in grid_ids(name)]
    assert statuses.count("done") == count


def test_dry_run_of_the_reference_grid_shows_every_committed_run_done(machine):
    result = CliRunner().invoke(main, ["grid", "fmnist-reference", "--dry-run", "--out",
                                       str(ROOT / "results" / "reference")])
    assert result.exit_code == 0, result.output
    done = COMMITTED["fmnist-reference"][1]
    assert f"72 runs: {done} already done" in result.output


@pytest.mark.parametrize(("asked", "recorded", "here", "expected"), [
    ("auto", "bf16", "fp32", "bf16"), ("auto", "fp32", "bf16", "fp32"), ("auto", None, "bf16", "bf16"),
    ("fp32", "fp32", "fp32", "fp32"),
])
def test_a_resumed_run_keeps_the_precision_it_started_in(asked, recorded, here, expected):
    cfg = build_config(method="pgd-at", overrides={"precision": asked})
    state = {} if recorded is None else {"precision": recorded}
    logged: list[str] = []
    with Progress(False) as progress:
        progress.log = logged.append  # type: ignore[method-assign]
        assert resumed_precision(cfg, here, state, progress) == expected
    assert bool(logged) == (recorded is not None and recorded != here)


def test_a_resumed_run_never_switches_an_explicit_precision():
    cfg = build_config(method="pgd-at", overrides={"precision": "fp32"})
    with Progress(False) as progress, pytest.raises(BenchError, match="trained in bf16.*--force"):
        resumed_precision(cfg, "fp32", {"precision": "bf16"}, progress)
