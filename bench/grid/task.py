"""One grid run inside a worker: lock it, train and evaluate it (resuming), and summarise the outcome."""

from __future__ import annotations

import shutil
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import store
from bench.config import RunConfig
from bench.errors import BenchError
from bench.grid.locks import LOCK_FILE, LockHeld, run_lock
from bench.progress import Progress
from bench.runner import resolve_device, run_one

#: outcomes of a grid run
TRAINED, DONE_EARLIER, FAILED, LOCKED = "trained", "done earlier", "failed", "locked"


@dataclass(frozen=True)
class RunTask:
    """Everything a worker needs for one run (picklable: it travels to worker processes and SLURM jobs)."""

    config: RunConfig
    out: Path
    data_root: str | None
    device: str
    force: bool = False
    progress: bool = False

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


def run_status(run_dir: Path) -> str:
    """``done``, ``failed``, ``partial`` (started, not finished) or ``todo``."""
    if store.is_done(run_dir):
        return "done"
    if (run_dir / store.FAILED_FILE).exists():
        return "failed"
    if (run_dir / store.CONFIG_FILE).exists():
        return "partial"
    return "todo"


def finished_result(run_dir: Path) -> RunResult:
    """A finished run's result from its eval.json."""
    record = store.read_json(run_dir / store.eval_file("last"))
    return RunResult.from_record(run_dir.name, DONE_EARLIER, record)


def _clear(run_dir: Path) -> None:
    """Delete a previous attempt but keep our lock."""
    for child in run_dir.iterdir():
        if child.is_dir():
            shutil.rmtree(child)
        elif child.name != LOCK_FILE:
            child.unlink()


def execute(task: RunTask, progress: Progress) -> RunResult:
    """Train and evaluate one run under its lock; a failure becomes a result, not an exception."""
    cfg, run_dir = task.config, task.run_dir
    try:
        with run_lock(run_dir, progress.log):
            if store.is_done(run_dir) and not task.force:
                return finished_result(run_dir)
            if task.force:
                _clear(run_dir)
            device = resolve_device(task.device)
            record = run_one(cfg, Path(task.out), data_root=task.data_root, device=device, progress=progress)
    except LockHeld as held:
        return RunResult(cfg.run_id, LOCKED, str(held))
    except BenchError as err:
        return RunResult(cfg.run_id, FAILED, str(err))
    except Exception as err:  # a bug in one run must not stop the grid; its traceback goes to the log
        progress.log(f"{cfg.run_id}: {traceback.format_exc()}")
        message = f"{type(err).__name__}: {err}"
        store.mark_failed(run_dir, message)
        return RunResult(cfg.run_id, FAILED, message)
    return RunResult.from_record(cfg.run_id, TRAINED, record)


def run_task(task: RunTask) -> RunResult:
    """Entry point of worker processes and SLURM jobs."""
    with Progress(task.progress) as progress:
        return execute(task, progress)
