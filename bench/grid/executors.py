"""Local executors: in this process, or N spawned worker processes (SLURM: bench/grid/slurm.py).

Each takes the runs still to do as RunTasks and calls ``report`` with each RunResult as it arrives.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, replace
from typing import Any, Literal

import torch

from bench.core.device import resolve_device
from bench.core.errors import InputError
from bench.grid.task import RunResult, RunTask, run_task

Report = Callable[[RunResult], None]
#: ``--workers``: a number of local worker processes, or ``auto`` (``auto_workers``)
Workers = int | Literal["auto"]
#: local workers sharing one CUDA device at most under ``--workers auto``: set from `bench perf --packing` on an
#: H200; see docs/performance.md. Until measured: 4, what an earlier H200 measurement ran (4 AutoAttack
#: evaluations at once took 127-212 s each, against ~410 s alone).
CUDA_WORKERS_CAP = 4
#: device memory one run is assumed to need under ``--workers auto``: an allowance, not a measurement (a resnet18
#: training step at batch 128 peaked at 1 GiB allocated on the H200; the evaluation's batches of 500 and each
#: process's CUDA context come on top); docs/performance.md says how to measure it
CUDA_RUN_MIB = 8192

#: this worker process's device and its index, set by ``_init_worker``
_worker: dict[str, Any] = {}


def worker_device(device: str, index: int) -> str:
    """Worker ``index``'s device: ``cuda:index % count`` for auto/cuda with several GPUs, else ``device``."""
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if device in ("auto", "cuda") and count > 1:
        return f"cuda:{index % count}"
    return device


def cpu_cores() -> int:
    """The CPU cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def cpu_threads(workers: int, cores: int | None = None) -> int:
    """Torch threads per worker so that workers x threads <= CPU cores (this machine's unless ``cores``)."""
    return max(1, (cpu_cores() if cores is None else cores) // workers)


@dataclass(frozen=True)
class WorkerChoice:
    """What ``--workers auto`` chose, and why (one line for the log)."""

    workers: int
    reason: str


def _at_most_runs(workers: int, runs: int | None) -> tuple[int, str]:
    """``workers``, but no more than the runs to do (None: no limit), and the clause saying so."""
    if runs is None or workers <= max(runs, 1):
        return workers, ""
    return max(runs, 1), f", capped at the {runs} runs to do"


def choose_cpu_workers(cores: int, runs: int | None) -> WorkerChoice:
    """One worker per core, no more than the runs to do; ``cpu_threads`` then gives each ``cores // workers``
    torch threads, so workers x threads never exceeds the cores."""
    workers, capped = _at_most_runs(max(cores, 1), runs)
    threads = cpu_threads(workers, cores)
    return WorkerChoice(workers, f"--workers auto: {workers} (cpu: one worker per core, {cores} cores{capped}; "
                                 f"{threads} torch thread{'s' * (threads > 1)} each)")


def choose_cuda_workers(free_mib: float, devices: int, runs: int | None, run_mib: float = CUDA_RUN_MIB,
                        cap: int = CUDA_WORKERS_CAP) -> WorkerChoice:
    """Per device: free memory over the per-run estimate, at least 1 and at most ``cap``; times the ``devices``
    that ``worker_device`` deals the workers to; no more than the runs to do."""
    fits = int(free_mib // run_mib)
    per_device = max(1, min(cap, fits))
    workers, capped = _at_most_runs(per_device * devices, runs)
    bound = f", capped at {cap} per device (CUDA_WORKERS_CAP)" if fits > cap else ", but at least 1" if fits < 1 else ""
    where = f" on each of {devices} devices" if devices > 1 else ""
    return WorkerChoice(workers, f"--workers auto: {workers} (cuda: {free_mib / 1024:.1f} GiB free{where} / "
                                 f"{run_mib / 1024:g} GiB per run = {fits}{bound}{capped})")


def auto_workers(device: str, runs: int | None) -> WorkerChoice:
    """``--workers auto`` for runs on ``device`` (auto, cpu, cuda or cuda:N): from the cores on a CPU, from the
    free memory of the devices the workers get on CUDA (the least free of them)."""
    resolved = resolve_device(device)
    if resolved.type != "cuda":
        return choose_cpu_workers(cpu_cores(), runs)
    count = torch.cuda.device_count()
    if device in ("auto", "cuda") and count > 1:
        indices = list(range(count))
    else:
        indices = [torch.cuda.current_device() if resolved.index is None else resolved.index]
    free = min(torch.cuda.mem_get_info(i)[0] for i in indices) / 2**20
    return choose_cuda_workers(free, len(indices), runs)


def resolve_workers(workers: Workers, device: str, runs: int | None, log: Callable[[str], None]) -> int:
    """A number of local workers: ``workers`` itself, or what ``auto_workers`` chooses (its reason logged)."""
    if workers != "auto":
        return workers
    choice = auto_workers(device, runs)
    log(choice.reason)
    return choice.workers


def _init_worker(counter: Any, device: str, threads: int) -> None:
    with counter.get_lock():
        index = counter.value
        counter.value += 1
    torch.set_num_threads(threads)
    _worker["device"] = worker_device(device, index)


def _run_in_worker(task: RunTask) -> RunResult:
    return run_task(replace(task, device=_worker["device"], progress=False))


def run_local(tasks: Sequence[RunTask], workers: int, report: Report) -> list[RunResult]:
    """One worker: runs one after another in this process; more: that many 'spawn' processes."""
    if workers < 1:
        raise InputError(f"--workers must be at least 1, got {workers}")
    results: list[RunResult] = []
    if workers == 1 or len(tasks) <= 1:
        for task in tasks:
            results.append(run_task(task))
            report(results[-1])
        return results
    context = multiprocessing.get_context("spawn")
    n = min(workers, len(tasks))
    with ProcessPoolExecutor(n, mp_context=context, initializer=_init_worker,
                             initargs=(context.Value("i", 0), tasks[0].device, cpu_threads(n))) as pool:
        for future in as_completed([pool.submit(_run_in_worker, task) for task in tasks]):
            results.append(future.result())
            report(results[-1])
    return results
