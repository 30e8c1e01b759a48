"""Local executors: in this process, or N spawned worker processes (SLURM: bench/grid/slurm.py).

Each takes the runs still to do as RunTasks and calls ``report`` with each RunResult as it arrives.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import replace
from typing import Any

import torch

from bench.core.errors import InputError
from bench.grid.task import RunResult, RunTask, run_task

Report = Callable[[RunResult], None]

#: this worker process's device and its index, set by ``_init_worker``
_worker: dict[str, Any] = {}


def worker_device(device: str, index: int) -> str:
    """Worker ``index``'s device: ``cuda:index % count`` for auto/cuda with several GPUs, else ``device``."""
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if device in ("auto", "cuda") and count > 1:
        return f"cuda:{index % count}"
    return device


def cpu_threads(workers: int) -> int:
    """Torch threads per worker so that workers x threads <= CPU cores."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, cores // workers)


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
