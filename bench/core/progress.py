"""Progress bars with ETA (rich), one live display shared by every loop of a command."""

from __future__ import annotations

from types import TracebackType

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.progress import Progress as RichProgress


class Task:
    """One bar; ``advance`` after each step, ``close`` when finished."""

    def __init__(self, progress: RichProgress, task_id: int, transient: bool):
        self._progress, self._id, self._transient = progress, task_id, transient

    def advance(self, steps: int = 1) -> None:
        self._progress.advance(self._id, steps)

    def close(self) -> None:
        if self._transient:
            self._progress.remove_task(self._id)


class Progress:
    """Context manager around rich's Progress; ``enabled=False`` keeps only the log lines."""

    def __init__(self, enabled: bool = True, console: Console | None = None):
        self.console = console or Console(stderr=True)
        self._rich = RichProgress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
            TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
            console=self.console, disable=not enabled,
        )

    def __enter__(self) -> Progress:
        self._rich.__enter__()
        return self

    def __exit__(self, kind: type[BaseException] | None, err: BaseException | None, tb: TracebackType | None) -> None:
        self._rich.__exit__(kind, err, tb)

    def task(self, description: str, total: int, completed: int = 0, transient: bool = False) -> Task:
        return Task(self._rich, self._rich.add_task(description, total=total, completed=completed), transient)

    def log(self, message: str) -> None:
        self.console.print(message, highlight=False, soft_wrap=True)
