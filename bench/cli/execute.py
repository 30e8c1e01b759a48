"""Train a list of runs as `bench run` and `bench grid` do: check the results folder, device and data, skip
finished runs, run the rest on local workers or SLURM jobs, print a line per finished run and the summary table."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from bench.core import store
from bench.core.device import resolve_device
from bench.core.errors import BenchError, InputError
from bench.evaluation.settings import EvalSettings
from bench.grid.executors import Report, Workers, resolve_workers, run_local
from bench.grid.slurm import SlurmOptions, run_slurm
from bench.grid.task import (
    DONE_EARLIER,
    EVALUATED,
    FAILED,
    LOCKED,
    TRAINED,
    RunResult,
    RunTask,
    finished_result,
    missing_results,
)
from bench.training.config import RunConfig
from bench.training.loop import run_data

#: a finished run whose eval.json lacks attacks of the grid's suite
TO_EVALUATE = "to evaluate"
STYLE = {"done": "green", "partial": "yellow", "failed": "red", "todo": "default", "locked": "yellow",
         TO_EVALUATE: "yellow", TRAINED: "green", EVALUATED: "green", DONE_EARLIER: "green"}
#: wide enough for a run id and the method parameters of a sweep
WIDTH = 180


def _percent(acc: float | None) -> str:
    return "-" if acc is None else f"{100 * acc:.2f}"


def summary_table(configs: Sequence[RunConfig], results: dict[str, RunResult], out: Path) -> Table:
    """One row per run: how it ended, the precision it trained in, its clean / PGD-20 accuracy (%)."""
    table = Table(title="grid summary: clean / PGD-20 accuracy (%)")
    for col in ("run", "status", "precision", "clean", "PGD-20"):
        table.add_column(col, justify="right" if col in ("clean", "PGD-20") else "left", no_wrap=col == "run")
    for cfg in configs:
        res = results[cfg.run_id]
        status = f"{res.status}: {res.message}" if res.message else res.status
        table.add_row(cfg.run_id, f"[{STYLE[res.status]}]{escape(status)}", store.trained_precision(out / cfg.run_id),
                      _percent(res.clean), _percent(res.pgd20))
    return table


def reporter(total: int, console: Console) -> Report:
    """A callback that prints one line per finished run, numbered."""
    finished = 0

    def report(res: RunResult) -> None:
        nonlocal finished
        finished += 1
        accs = "" if res.clean is None else f" (clean {_percent(res.clean)}%, PGD-20 {_percent(res.pgd20)}%)"
        line = f"[{finished}/{total}] {res.run_id}: {res.status}{accs} {res.message}"
        console.print(line.rstrip(), highlight=False, markup=False)

    return report


def grid_statuses(configs: Sequence[RunConfig], out: Path, evaluation: EvalSettings,
                  eval_eps: Sequence[float] = ()) -> dict[str, str]:
    """Each run's status (``store.run_status``), where a finished run lacking attacks of ``evaluation``, at its
    own eps or at a radius of ``eval_eps``, is ``to evaluate``."""
    statuses = {cfg.run_id: store.run_status(out / cfg.run_id) for cfg in configs}
    return {cfg.run_id: TO_EVALUATE if statuses[cfg.run_id] == "done"
            and missing_results(out / cfg.run_id, cfg, evaluation, eval_eps) else statuses[cfg.run_id]
            for cfg in configs}


def check_results_dir(out: Path) -> None:
    """``--out`` must be (or become) a folder: neither it nor a parent may be a file."""
    for path in (out, *out.parents):
        if path.exists() and not path.is_dir():
            raise InputError(f"results folder {out}: {path} is a file; pass a folder with --out")


def execute_grid(
    configs: Sequence[RunConfig], evaluation: EvalSettings, out: Path, *, source: str, force: bool, wait: bool,
    device: str, data_root: str | None, progress: bool, executor: str = "local", workers: Workers = 1,
    slurm: SlurmOptions | None = None, cluster: str = "slurm", eval_eps: Sequence[float] = (),
) -> dict[str, RunResult]:
    """Run ``configs`` (skipping finished ones unless ``force``; evaluating finished ones at the radii of
    ``eval_eps`` they lack) and print the summary table.

    Device, data and results folder are checked before anything is written. Raises BenchError when a run
    failed or another process holds one.
    """
    check_results_dir(out)
    statuses = grid_statuses(configs, out, evaluation, eval_eps)
    counts = Counter(statuses.values())
    console = Console(width=WIDTH)
    if executor == "local":
        resolve_device(device)
        for cfg in {(c.dataset, c.ur): c for c in configs}.values():
            run_data(cfg, data_root, "cpu")  # a missing dataset or a UR too large for it fails here
    todo = [cfg for cfg in configs if force or statuses[cfg.run_id] != "done"]
    results = {cfg.run_id: finished_result(out / cfg.run_id) for cfg in configs if cfg not in todo}
    console.print(f"{source}: {overview(len(configs), counts)}; running {len(todo)} ({executor})", highlight=False)
    tasks = [RunTask(cfg, out, data_root, device, force, progress, evaluation, wait, tuple(eval_eps))
             for cfg in todo]
    report = reporter(len(tasks), Console(stderr=True, width=WIDTH))
    if executor == "slurm":
        ran = run_slurm(tasks, out, slurm or SlurmOptions(), report, console.print, cluster=cluster) if tasks else []
    elif tasks:
        workers = resolve_workers(workers, device, len(tasks), lambda line: console.print(line, highlight=False))
        ran = run_local(tasks, workers, report)
    else:
        ran = []
    results |= {res.run_id: res for res in ran}
    console.print(summary_table(configs, results, out))
    failed = [res for res in results.values() if res.status == FAILED]
    if len(configs) == 1 and failed:
        raise BenchError(f"{failed[0].run_id} failed: {failed[0].message}")
    if failed:
        raise BenchError(f"{len(failed)} of {len(configs)} runs failed (see the `failed` file in each run "
                         "folder); rerun the same command to retry them")
    locked = [res for res in results.values() if res.status == LOCKED]
    if locked:
        raise BenchError(f"{len(locked)} of {len(configs)} runs are held by another process ({locked[0].message})")
    return results


def overview(total: int, counts: Counter) -> str:
    evaluate = f", {counts[TO_EVALUATE]} {TO_EVALUATE}" if counts[TO_EVALUATE] else ""
    return (f"{total} runs: {counts['done']} already done{evaluate}, {counts['partial']} partial, "
            f"{counts['failed']} failed, {counts['locked']} locked, {counts['todo']} to do")
