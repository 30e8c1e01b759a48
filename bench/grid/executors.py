"""Executors: local (in this process, or N spawned worker processes) and SLURM through submitit.

Each takes the runs still to do as RunTasks and calls ``report`` with each RunResult as it arrives.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

import torch

from bench.core.errors import InputError
from bench.grid.task import FAILED, RunResult, RunTask, run_task

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


@dataclass(frozen=True)
class SlurmOptions:
    """Resources of each SLURM job (one run per job)."""

    partition: str | None = None
    time: int = 1440  # minutes
    gpus: int = 1
    cpus: int = 8
    array_parallelism: int = 64

    @classmethod
    def merge(cls, file: Mapping[str, Any], flags: Mapping[str, Any]) -> SlurmOptions:
        """The grid file's ``[slurm]`` table, overridden by the flags that were given (not None)."""
        values = dict(file) | {k: v for k, v in flags.items() if v is not None}
        for f in fields(cls):
            kind = str if f.name == "partition" else int
            if f.name in values and not isinstance(values[f.name], kind):
                raise InputError(f"slurm {f.name} must be {'a string' if kind is str else 'a whole number'}, "
                                 f"got {values[f.name]!r}")
        return cls(**values)


def _for_job(task: RunTask) -> RunTask:
    """Absolute paths (a job may start in another folder) and no progress bars (logs go to files)."""
    data_root = str(Path(task.data_root).resolve()) if task.data_root else None
    return replace(task, out=Path(task.out).resolve(), data_root=data_root, progress=False)


def run_slurm(
    tasks: Sequence[RunTask], out: Path, options: SlurmOptions, report: Report, log: Callable[[str], None], *,
    cluster: str = "slurm", poll_s: float = 10.0,
) -> list[RunResult]:
    """One submitit job per run (a job array), logs in ``out/_slurm``.

    ``cluster`` is submitit's backend: 'slurm', or 'local'/'debug' to run the same jobs on this machine.
    """
    import submitit

    executor = submitit.AutoExecutor(folder=Path(out) / "_slurm", cluster=cluster)
    executor.update_parameters(
        name="ltbench", timeout_min=options.time, gpus_per_node=options.gpus, cpus_per_task=options.cpus,
        slurm_partition=options.partition, slurm_array_parallelism=options.array_parallelism,
    )
    jobs = executor.map_array(run_task, [_for_job(task) for task in tasks])
    log(f"submitted {len(jobs)} job(s) to {cluster} ({jobs[0].job_id} ...); logs in {executor.folder}")
    by_id = {job.job_id: task for job, task in zip(jobs, tasks, strict=True)}
    results: list[RunResult] = []
    for job in submitit.helpers.as_completed(jobs, poll_frequency=poll_s):
        try:
            results.append(job.result())
        except Exception as err:  # the job died: killed, timed out, node failure
            first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            run_id = by_id[job.job_id].config.run_id
            results.append(RunResult(run_id, FAILED, f"job {job.job_id}: {first_line}"))
        report(results[-1])
    return results
