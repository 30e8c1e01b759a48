"""One run inside a worker (of `bench run` or `bench grid`): lock it, train and evaluate it (resuming), or
only add the attacks a finished run lacks, and summarise the outcome. Any exception becomes a ``failed``
marker holding the error and its traceback."""

from __future__ import annotations

import dataclasses
import shutil
import traceback
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.core import store
from bench.core.device import resolve_device
from bench.core.errors import BenchError
from bench.core.locks import LOCK_FILE, LockHeld, run_lock
from bench.core.progress import Progress
from bench.evaluation.protocol import EvalResults, MalformedResults, default_step
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
    #: radii besides the run's own eps at which the evaluation's attacks run too (grid ``eval_eps``)
    eval_eps: tuple[float, ...] = ()

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


def missing_results(run_dir: Path, cfg: RunConfig, evaluation: EvalSettings,
                    eval_eps: Sequence[float] = ()) -> dict[float | None, tuple[str, ...]]:
    """The attacks of ``evaluation`` that a finished run's eval file lacks, per radius: None for the run's own
    eps, then each radius of ``eval_eps`` (on the test images of the run's own evaluation); empty when none.

    A file evaluated on other test images (another ``n``) or one that cannot be read counts as complete:
    adding results on other images stays the job of an explicit `bench eval`.
    """
    path = Path(run_dir) / store.eval_file(evaluation.checkpoint)
    try:
        record = store.read_json(path)
        results = EvalResults.read(record, cfg.eps, cfg.step_size)
    except (BenchError, MalformedResults):
        return {}
    settings = record.get("evaluation")
    if not isinstance(settings, dict) or settings.get("n") != evaluation.n:
        return {}
    if results.primary is None:
        return dict.fromkeys((None, *(e for e in eval_eps if e != cfg.eps)), evaluation.attacks)
    missing: dict[float | None, tuple[str, ...]] = {}
    for eps in (None, *(e for e in eval_eps if e != cfg.eps)):
        radius = cfg.eps if eps is None else eps
        asked = dataclasses.replace(results.primary.protocol, eps=radius, precision=evaluation.precision,
                                    step_size=default_step(radius, cfg.eps, cfg.step_size))
        keys = tuple(key for key in evaluation.attacks
                     if key not in getattr(results.find(results.home(key, asked)), "attacks", {}))
        if keys:
            missing[eps] = keys
    return missing


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
            missing = missing_results(run_dir, cfg, task.evaluation, task.eval_eps) if finished else {}
            if finished and not missing:
                return finished_result(run_dir)
            try:
                if task.force:
                    _clear(run_dir)
                store.remove_temp_files(run_dir)
                device = resolve_device(task.device)
                if finished:
                    evaluate_run(run_dir, task.evaluation, data_root=task.data_root, device=device,
                                 progress=progress, eps=list(missing))
                    return RunResult.from_record(cfg.run_id, EVALUATED,
                                                 store.read_json(run_dir / store.eval_file(task.evaluation.checkpoint)))
                record = run_one(cfg, task.evaluation, run_dir, data_root=task.data_root, device=device,
                                 progress=progress, eval_eps=task.eval_eps)
            except Exception as err:  # one failed run must not stop the others; the traceback goes to `failed`
                message = str(err) if isinstance(err, BenchError) else f"{type(err).__name__}: {err}"
                store.mark_failed(run_dir, message, traceback.format_exc())
                return RunResult(cfg.run_id, FAILED, message)
    except LockHeld as held:
        return RunResult(cfg.run_id, LOCKED, f"{held}; it is working on this run (wait with --wait)")
    except OSError as err:  # the run folder cannot be created or locked
        return RunResult(cfg.run_id, FAILED, f"cannot lock {run_dir} ({err.strerror or err})")
    return RunResult.from_record(cfg.run_id, TRAINED, record)


def run_task(task: RunTask) -> RunResult:
    """Entry point of worker processes and SLURM jobs."""
    with Progress(task.progress) as progress:
        return execute(task, progress)
