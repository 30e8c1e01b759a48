"""One run inside a worker (of `bench run` or `bench grid`): lock it, train and evaluate it (resuming), or
only add the attacks a finished run lacks, and summarise the outcome. Any exception becomes a ``failed``
marker holding the error and its traceback."""

from __future__ import annotations

import shutil
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.core import store
from bench.core.device import resolve_device
from bench.core.errors import BenchError
from bench.core.locks import LOCK_FILE, LockHeld, run_lock
from bench.core.progress import Progress
from bench.evaluation.settings import EvalSettings
from bench.runs.runner import evaluate_run, run_one
from bench.training.config import RunConfig

#: outcomes of a run
TRAINED, EVALUATED, DONE_EARLIER, FAILED, LOCKED = "trained", "evaluated", "done earlier", "failed", "locked"


@dataclass(frozen=True)
class RunTask:
    """Everything a worker needs for one run (picklable: it travels to worker processes and SLURM jobs)."""

    config: RunConfig
    out: Path
    data_root: str | None
    device: str
    force: bool = False
    progress: bool = False
    evaluation: EvalSettings = field(default_factory=EvalSettings)
    wait: bool = False

    @property
    def run_dir(self) -> Path:
        return Path(self.out) / self.config.run_id


@dataclass(frozen=True)
class RunResult:
    """How a run ended, with its clean and PGD-20 accuracy (fractions) when it has them."""

    run_id: str
    status: str
    message: str = ""
    clean: float | None = None
    pgd20: float | None = None

    @classmethod
    def from_record(cls, run_id: str, status: str, record: dict[str, Any]) -> RunResult:
        attacks = record.get("attacks", {})
        return cls(run_id, status, clean=attacks.get("clean", {}).get("acc"),
                   pgd20=attacks.get("pgd20", {}).get("acc"))


def finished_result(run_dir: Path) -> RunResult:
    """A finished run's result from its eval.json (failed, naming the fix, when that is unreadable)."""
    try:
        record = store.read_json(run_dir / store.eval_file("last"))
    except BenchError as err:
        return RunResult(run_dir.name, FAILED, str(err))
    return RunResult.from_record(run_dir.name, DONE_EARLIER, record)


def missing_attacks(run_dir: Path, evaluation: EvalSettings) -> tuple[str, ...]:
    """The attacks of ``evaluation`` that a finished run's eval file lacks on the same test images.

    A file on other test images (another ``n``) or one that cannot be read counts as complete: evaluating it
    again would drop its results, which stays the job of an explicit `bench eval`.
    """
    path = Path(run_dir) / store.eval_file(evaluation.checkpoint)
    try:
        record = store.read_json(path)
    except BenchError:
        return ()
    settings = record.get("evaluation")
    if not isinstance(settings, dict) or settings.get("n") != evaluation.n:
        return ()
    return tuple(key for key in evaluation.attacks if key not in record.get("attacks", {}))


def _clear(run_dir: Path) -> None:
    """Delete a previous attempt but keep our lock."""
    for child in run_dir.iterdir():
        if child.is_dir():
            shutil.rmtree(child)
        elif child.name != LOCK_FILE:
            child.unlink()


def execute(task: RunTask, progress: Progress) -> RunResult:
    """Train and evaluate one run under its lock, or only run the attacks a finished run lacks; a failure becomes
    a result (and a marker), not an exception.

    KeyboardInterrupt passes through: the run stays partial and resumes on the next call.
    """
    cfg, run_dir = task.config, task.run_dir
    try:
        with run_lock(run_dir, progress.log, wait=task.wait):
            finished = store.is_done(run_dir) and not task.force
            if finished and not missing_attacks(run_dir, task.evaluation):
                return finished_result(run_dir)
            try:
                if task.force:
                    _clear(run_dir)
                store.remove_temp_files(run_dir)
                device = resolve_device(task.device)
                if finished:
                    status = EVALUATED
                    record = evaluate_run(run_dir, task.evaluation, data_root=task.data_root, device=device,
                                          progress=progress)
                else:
                    status = TRAINED
                    record = run_one(cfg, task.evaluation, run_dir, data_root=task.data_root, device=device,
                                     progress=progress)
            except Exception as err:  # one failed run must not stop the others; the traceback goes to `failed`
                message = str(err) if isinstance(err, BenchError) else f"{type(err).__name__}: {err}"
                store.mark_failed(run_dir, message, traceback.format_exc())
                return RunResult(cfg.run_id, FAILED, message)
    except LockHeld as held:
        return RunResult(cfg.run_id, LOCKED, f"{held}; it is working on this run (wait with --wait)")
    except OSError as err:  # the run folder cannot be created or locked
        return RunResult(cfg.run_id, FAILED, f"cannot lock {run_dir} ({err.strerror or err})")
    return RunResult.from_record(cfg.run_id, status, record)


def run_task(task: RunTask) -> RunResult:
    """Entry point of worker processes and SLURM jobs."""
    with Progress(task.progress) as progress:
        return execute(task, progress)
