"""Runs per hour on one device against the number of local workers (``bench perf --packing``).

For each worker count k, k x ``runs_per_worker`` short runs (distinct seeds) train and evaluate through the local
executor into a fresh temporary folder; the wall clock of the whole batch gives runs per hour.
"""

from __future__ import annotations

import dataclasses
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from bench.core.device import resolve_device
from bench.core.errors import BenchError, InputError
from bench.data.cifar import write_synthetic_cifar10
from bench.evaluation.settings import EvalSettings, eval_settings
from bench.grid.executors import Report, run_local
from bench.grid.task import TRAINED, RunTask
from bench.training.config import PRESETS, RunConfig, build_config


@dataclass(frozen=True)
class PackingProtocol:
    """The short runs that a packing measurement trains: ``preset`` with ``epochs`` epochs, the ``suite``."""

    method: str = "reat"
    arch: str = "cnn-small"
    dataset: str = "fashion-mnist"
    ur: float = 100.0
    preset: str = "quick"
    epochs: int = 2
    suite: str = "fast"
    runs_per_worker: int = 2
    precision: str = "auto"

    def configs(self, runs: int) -> list[RunConfig]:
        """``runs`` runs of this protocol, seeds 0 to runs - 1."""
        overrides = {"epochs": self.epochs, "precision": self.precision}
        return [build_config(method=self.method, dataset=self.dataset, ur=self.ur, arch=self.arch, preset=self.preset,
                             seed=seed, overrides=overrides) for seed in range(runs)]

    def evaluation(self) -> EvalSettings:
        """The preset's final evaluation with this protocol's suite."""
        return eval_settings(PRESETS[self.preset].evaluation, suite=self.suite)


def one_device(device: str) -> str:
    """``device`` pinned to one device (``cuda`` -> ``cuda:N``), so that the workers share it."""
    resolved = resolve_device(device)
    if resolved.type == "cuda" and resolved.index is None:
        resolved = torch.device("cuda", torch.cuda.current_device())
    return str(resolved)


def time_workers(protocol: PackingProtocol, workers: int, *, data_root: str | None, device: str,
                 report: Report) -> dict[str, Any]:
    """Train ``workers`` x ``runs_per_worker`` runs with ``workers`` local workers in a fresh folder, timed.

    With one worker the runs train in this process, so on CUDA the row also has their peak allocated memory.
    """
    runs = workers * protocol.runs_per_worker
    evaluation = protocol.evaluation()
    cuda = device.startswith("cuda")
    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
    with tempfile.TemporaryDirectory(prefix="ltbench-packing-") as out:
        tasks = [RunTask(cfg, Path(out), data_root, device, evaluation=evaluation) for cfg in protocol.configs(runs)]
        began = time.perf_counter()
        results = run_local(tasks, workers, report)
        seconds = time.perf_counter() - began
    failed = [res for res in results if res.status != TRAINED]
    if failed:
        raise BenchError(f"packing with {workers} workers: run {failed[0].run_id} {failed[0].status}: "
                         f"{failed[0].message}")
    row = {"workers": workers, "runs": runs, "seconds": seconds, "runs_per_hour": runs * 3600 / seconds}
    if cuda and workers == 1:
        row["run_peak_mib"] = torch.cuda.max_memory_allocated(device) / 2**20
    if cuda:
        torch.cuda.empty_cache()  # the workers of the next count get the memory this process cached
    return row


def measure_packing(protocol: PackingProtocol, workers: Sequence[int], *, data_root: str | None, device: str,
                    synthetic: bool, report: Report) -> dict[str, Any]:
    """Runs per hour for each worker count on one device, and the speed-up over the smallest count.

    ``synthetic``: the runs read random CIFAR-10 files at the real sizes, written to a temporary data root.
    """
    if synthetic and protocol.dataset != "cifar10":
        raise InputError(f"--synthetic packing runs read synthetic CIFAR-10 files; use --dataset cifar10 (got "
                         f"{protocol.dataset}) or real data with --data-root")
    device = one_device(device)
    with tempfile.TemporaryDirectory(prefix="ltbench-synthetic-") as synthetic_root:
        root = str(write_synthetic_cifar10(Path(synthetic_root))) if synthetic else data_root
        rows = [time_workers(protocol, k, data_root=root, device=device, report=report) for k in workers]
    base = min(rows, key=lambda row: row["workers"])
    for row in rows:
        row["speedup"] = row["runs_per_hour"] / base["runs_per_hour"]
    return {**dataclasses.asdict(protocol), "device": device, "synthetic": synthetic,
            "baseline_workers": base["workers"], "results": rows}
