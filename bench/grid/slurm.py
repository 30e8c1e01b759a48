"""The SLURM executor: one job per run (a job array) through submitit, requeued on time-out or preemption.

Jobs are watched with ``squeue`` (it works without SLURM's accounting database); their ids are kept in
``out/_slurm/jobs.json`` so that ``bench grid --dry-run`` can show each run's job state.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import submitit
import torch

from bench.core import store
from bench.core.errors import BenchError, InputError
from bench.grid.executors import Report
from bench.grid.task import FAILED, RunResult, RunTask, run_task

JOBS_FILE = "jobs.json"
#: the state of a job that squeue no longer lists (it ended longer ago than the cluster's MinJobAge)
GONE = "gone"
#: states after which a job never runs again (a PREEMPTED job may still be requeued by SLURM)
ENDED = {"COMPLETED", "CANCELLED", "FAILED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "BOOT_FAIL", "DEADLINE",
         "SPECIAL_EXIT", "REVOKED", GONE}
#: sbatch options that submitit sets itself: overriding them would lose the job's logs or its array
RESERVED = ("array", "output", "error", "open-mode", "wrap")
STRINGS = ("partition", "mem", "account", "qos", "constraint")
MEMORY = re.compile(r"\d+[KMGT]?")


@dataclass(frozen=True)
class SlurmOptions:
    """Resources of each SLURM job (one run per job) and how often a job may be requeued."""

    partition: str | None = None
    time: int = 1440  # minutes
    gpus: int = 1
    cpus: int = 8
    array_parallelism: int = 64
    mem: str | None = None  # per node, sbatch's format: 16G, 500M
    account: str | None = None
    qos: str | None = None
    constraint: str | None = None
    options: Mapping[str, str | bool] = field(default_factory=dict)  # further sbatch options
    max_retries: int = 3  # requeues after time-outs and preemptions

    @classmethod
    def merge(cls, file: Mapping[str, Any], flags: Mapping[str, Any]) -> SlurmOptions:
        """The grid file's ``[slurm]`` table, overridden by the flags that were given (not None);
        ``options`` merges the file's table with the flags' KEY=VALUE pairs."""
        given = {k: v for k, v in flags.items() if v is not None}
        file_options, flag_options = file.get("options", {}), flags.get("options") or {}
        _check_options(file_options)
        values = dict(file) | given | {"options": {**file_options, **flag_options}}
        for f in fields(cls):
            if f.name in values and f.name != "options":
                _check(f.name, values[f.name])
        _check_options(values["options"])
        return cls(**values)

    def parameters(self) -> dict[str, Any]:
        """submitit's ``update_parameters`` arguments."""
        extra = {key.replace("_", "-"): value for key, value in self.options.items()}
        chosen = {"slurm_partition": self.partition, "slurm_mem": self.mem, "slurm_account": self.account,
                  "slurm_qos": self.qos, "slurm_constraint": self.constraint}
        return {
            "name": "ltbench", "timeout_min": self.time, "gpus_per_node": self.gpus, "cpus_per_task": self.cpus,
            "slurm_array_parallelism": self.array_parallelism, "slurm_signal_delay_s": min(90, self.time * 15),
            "slurm_additional_parameters": extra, **{k: v for k, v in chosen.items() if v is not None},
        }


def _check(name: str, value: Any) -> None:
    where = f"slurm {name} (--{name.replace('_', '-')} or [slurm] {name})"
    if name in STRINGS:
        if not isinstance(value, str) or not value:
            raise InputError(f"{where} must be a non-empty string, got {value!r}")
        if name == "mem" and not MEMORY.fullmatch(value):
            raise InputError(f"{where} must be a size such as 16G or 500M, got {value!r}")
        return
    least = 0 if name in ("gpus", "max_retries") else 1
    if not isinstance(value, int) or isinstance(value, bool) or value < least:
        raise InputError(f"{where} must be a whole number >= {least}, got {value!r}")


def _check_options(options: Any) -> None:
    if not isinstance(options, Mapping):
        raise InputError(f'slurm options must be a table of sbatch options, e.g. options = {{ mail-type = "END" }}, '
                         f"got {options!r}")
    for key, value in options.items():
        if key.replace("_", "-") in RESERVED:
            raise InputError(f"slurm option {key!r} is set by ltbench itself; leave it out "
                             f"(reserved: {', '.join(RESERVED)})")
        if not re.fullmatch(r"[a-z][a-z0-9_-]*", key) or not (isinstance(value, str) or value is True):
            raise InputError(f"slurm option {key}={value!r}: expected an sbatch option name in lower case and "
                             "a string value (or true for a flag), e.g. mail-type=END")


def parse_options(items: Iterable[str]) -> dict[str, str | bool]:
    """``--slurm-option KEY=VALUE`` (or a bare KEY for a flag such as ``exclusive``) as a dict."""
    options: dict[str, str | bool] = {}
    for item in items:
        key, sep, value = item.partition("=")
        options[key.strip().removeprefix("--")] = value if sep else True
    _check_options(options)
    return options


def job_cpus() -> int | None:
    """The CPUs SLURM gave this job's task; None outside a SLURM job."""
    given = os.environ.get("SLURM_CPUS_PER_TASK", "")
    return int(given) if given.isdigit() else None


class SlurmRun(submitit.helpers.Checkpointable):
    """``run_task`` inside a SLURM job, with as many torch threads as the job has CPUs (device ``auto`` too
    resolves here, on the node).

    Before the time limit, and when the cluster signals a preemption, submitit calls ``checkpoint``: the job
    requeues itself and the run resumes from its last epoch checkpoint, at most ``max_retries`` times; after
    that the run is marked failed (rerunning the grid resumes it).
    """

    def __init__(self, max_retries: int) -> None:
        self.retries_left = max_retries
        self.max_retries = max_retries

    def __call__(self, task: RunTask) -> RunResult:
        cpus = job_cpus()
        if cpus is not None:  # (submitit's debug and local backends keep this machine's threads)
            torch.set_num_threads(cpus)
        return run_task(task)

    def checkpoint(self, task: RunTask) -> submitit.helpers.DelayedSubmission:
        if self.retries_left <= 0:
            raise BenchError(f"the job timed out or was preempted {self.max_retries + 1} times (--max-retries "
                             f"{self.max_retries}); rerun the grid, perhaps with a longer --time, to resume it")
        self.retries_left -= 1
        return submitit.helpers.DelayedSubmission(self, task)


def queue_states(job_ids: Iterable[str]) -> dict[str, str] | None:
    """``squeue``'s state of each job id (``12_3``) it lists; None when squeue cannot be asked."""
    arrays = sorted({job_id.split("_")[0] for job_id in job_ids})
    if not arrays:
        return {}
    try:
        lines = subprocess.run(["squeue", "-h", "-r", "-t", "all", "-o", "%i %T", "-j", ",".join(arrays)],
                               capture_output=True, text=True, check=True, timeout=60).stdout.split()
    except (OSError, subprocess.SubprocessError):
        return None
    return dict(zip(lines[::2], lines[1::2], strict=True))


def job_states(out: Path) -> dict[str, str]:
    """The SLURM job of each run that a grid submitted into ``out``, with its state: run id -> ``12_3 RUNNING``
    (the state is left out when squeue cannot be asked; runs whose job squeue no longer lists are left out)."""
    path = Path(out) / "_slurm" / JOBS_FILE
    if not path.exists():
        return {}
    jobs: dict[str, str] = store.read_json(path)
    states = queue_states(jobs.values())
    if states is None:
        return dict(jobs)
    return {run_id: f"{job_id} {states[job_id]}" for run_id, job_id in jobs.items() if job_id in states}


def _record_jobs(folder: Path, jobs: Mapping[str, str]) -> None:
    path = folder / JOBS_FILE
    earlier = store.read_json(path) if path.exists() else {}
    store.write_json(path, earlier | dict(jobs))


def _for_job(task: RunTask) -> RunTask:
    """Absolute paths (a job may start in another folder) and no progress bars (logs go to files)."""
    data_root = str(Path(task.data_root).resolve()) if task.data_root else None
    return replace(task, out=Path(task.out).resolve(), data_root=data_root, progress=False)


def job_ended(state: str | None, has_result: bool) -> bool:
    """Whether a SLURM job is over: squeue's ``state`` decides (None: squeue cannot be asked, then the result
    file does). A result written while SLURM still lists the job as queued or running is not its last: a job
    that requeues itself can write one as it is stopped (its ``scontrol requeue`` killed by the requeue)."""
    return has_result if state is None else state in ENDED


def _result(job: submitit.Job, state: str | None, run_id: str) -> RunResult:
    """A finished job's RunResult: the run's own, or failed with the job's state and log."""
    if state not in (None, "COMPLETED") and not job.paths.result_pickle.exists():
        how = "left the queue" if state == GONE else f"ended {state}"
        return RunResult(run_id, FAILED, f"job {job.job_id} {how} before the run finished (log: "
                                         f"{job.paths.stderr}); rerun the grid to resume it")
    try:
        return job.result()
    except Exception as err:  # the job died without a result: killed, node failure, lost logs
        first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        return RunResult(run_id, FAILED, f"job {job.job_id}: {first_line}")


def run_slurm(
    tasks: Sequence[RunTask], out: Path, options: SlurmOptions, report: Report, log: Callable[[str], None], *,
    cluster: str = "slurm", poll_s: float = 5.0,
) -> list[RunResult]:
    """One submitit job per run (a job array), logs in ``out/_slurm``.

    ``cluster`` is submitit's backend: 'slurm', or 'local'/'debug' to run the same jobs on this machine.
    """
    executor = submitit.AutoExecutor(folder=Path(out) / "_slurm", cluster=cluster,
                                     slurm_max_num_timeout=options.max_retries)
    executor.update_parameters(**options.parameters())
    jobs = executor.map_array(SlurmRun(options.max_retries), [_for_job(task) for task in tasks])
    log(f"submitted {len(jobs)} job(s) to {cluster} ({jobs[0].job_id} ...); logs in {executor.folder}")
    run_ids = {job.job_id: task.config.run_id for job, task in zip(jobs, tasks, strict=True)}
    if cluster == "slurm":
        _record_jobs(Path(executor.folder), {run_id: job_id for job_id, run_id in run_ids.items()})
    results: list[RunResult] = []
    waiting = list(jobs)
    while waiting:
        states = queue_states(run_ids) if cluster == "slurm" else None
        for job in list(waiting):
            state = None if states is None else states.get(job.job_id, GONE)
            ended = job.done() if cluster != "slurm" else job_ended(state, job.paths.result_pickle.exists())
            if ended:
                waiting.remove(job)
                results.append(_result(job, state, run_ids[job.job_id]))
                report(results[-1])
        if waiting:
            time.sleep(poll_s)
    return results
