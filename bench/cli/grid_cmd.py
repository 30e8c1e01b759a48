"""``bench grid``: expand a grid file and train its runs with local workers or SLURM jobs."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from bench.cli.options import parse_settings, training_options
from bench.core import store
from bench.core.device import resolve_device
from bench.core.errors import BenchError, InputError
from bench.core.precision import device_type_of
from bench.evaluation.settings import EvalSettings
from bench.grid.executors import Report, SlurmOptions, run_local, run_slurm
from bench.grid.spec import changed_params, expand, load_grid
from bench.grid.task import (
    DONE_EARLIER,
    EVALUATED,
    FAILED,
    LOCKED,
    TRAINED,
    RunResult,
    RunTask,
    finished_result,
    missing_attacks,
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


def plan_table(configs: Sequence[RunConfig], statuses: dict[str, str]) -> Table:
    """The expanded runs that ``--dry-run`` lists."""
    table = Table(title=f"{len(configs)} runs")
    for col in ("run_id", "dataset", "arch", "UR", "method", "params", "status"):
        table.add_column(col, justify="right" if col == "UR" else "left", no_wrap=col == "run_id")
    for cfg in configs:
        status = statuses[cfg.run_id]
        params = ", ".join(f"{k}={v}" for k, v in changed_params(cfg).items())
        table.add_row(cfg.run_id, cfg.dataset, cfg.arch, f"{cfg.ur:g}", cfg.method, escape(params),
                      f"[{STYLE[status]}]{status}")
    return table


def summary_table(configs: Sequence[RunConfig], results: dict[str, RunResult]) -> Table:
    """One row per run: how it ended and its clean / PGD-20 accuracy (%)."""
    table = Table(title="grid summary: clean / PGD-20 accuracy (%)")
    for col in ("run", "status", "clean", "PGD-20"):
        table.add_column(col, justify="right" if col in ("clean", "PGD-20") else "left", no_wrap=col == "run")
    for cfg in configs:
        res = results[cfg.run_id]
        status = f"{res.status}: {res.message}" if res.message else res.status
        table.add_row(cfg.run_id, f"[{STYLE[res.status]}]{escape(status)}", _percent(res.clean),
                      _percent(res.pgd20))
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


def grid_statuses(configs: Sequence[RunConfig], out: Path, evaluation: EvalSettings) -> dict[str, str]:
    """Each run's status (``store.run_status``), where a finished run lacking attacks of ``evaluation`` is
    ``to evaluate``."""
    statuses = {cfg.run_id: store.run_status(out / cfg.run_id) for cfg in configs}
    return {run_id: TO_EVALUATE if status == "done" and missing_attacks(out / run_id, evaluation) else status
            for run_id, status in statuses.items()}


def check_results_dir(out: Path) -> None:
    """``--out`` must be (or become) a folder: neither it nor a parent may be a file."""
    for path in (out, *out.parents):
        if path.exists() and not path.is_dir():
            raise InputError(f"results folder {out}: {path} is a file; pass a folder with --out")


def execute_grid(
    configs: Sequence[RunConfig], evaluation: EvalSettings, out: Path, *, source: str, force: bool, wait: bool,
    device: str, data_root: str | None, progress: bool, executor: str = "local", workers: int = 1,
    slurm: SlurmOptions | None = None, cluster: str = "slurm",
) -> dict[str, RunResult]:
    """Run ``configs`` (skipping finished ones unless ``force``) and print the summary table.

    Device, data and results folder are checked before anything is written. Raises BenchError when a run
    failed or another process holds one.
    """
    check_results_dir(out)
    statuses = grid_statuses(configs, out, evaluation)
    counts = Counter(statuses.values())
    console = Console(width=WIDTH)
    if executor == "local":
        resolve_device(device)
        for cfg in {(c.dataset, c.ur): c for c in configs}.values():
            run_data(cfg, data_root, "cpu")  # a missing dataset or a UR too large for it fails here
    todo = [cfg for cfg in configs if force or statuses[cfg.run_id] != "done"]
    results = {cfg.run_id: finished_result(out / cfg.run_id) for cfg in configs if cfg not in todo}
    console.print(f"{source}: {overview(len(configs), counts)}; running {len(todo)} ({executor})", highlight=False)
    tasks = [RunTask(cfg, out, data_root, device, force, progress, evaluation, wait) for cfg in todo]
    report = reporter(len(tasks), Console(stderr=True, width=WIDTH))
    if executor == "slurm":
        ran = run_slurm(tasks, out, slurm or SlurmOptions(), report, console.print, cluster=cluster) if tasks else []
    else:
        ran = run_local(tasks, workers, report)
    results |= {res.run_id: res for res in ran}
    console.print(summary_table(configs, results))
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


@click.command("grid")
@click.argument("grid")
@click.option("--dry-run", is_flag=True, help="list the expanded runs and their status; train nothing")
@click.option("--preset", default=None, help="override the file's preset for every run (e.g. smoke)")
@training_options
@click.option("--executor", type=click.Choice(["local", "slurm"]), default="local", show_default=True)
@click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True,
              help="local worker processes (each trains its runs one after another on one device)")
@click.option("--partition", default=None, help="SLURM partition [grid file [slurm] partition]")
@click.option("--time", "time_min", type=int, default=None, help="SLURM time limit per run in minutes [1440]")
@click.option("--gpus", type=int, default=None, help="GPUs per SLURM job [1]")
@click.option("--cpus", type=int, default=None, help="CPUs per SLURM task [8]")
@click.option("--array-parallelism", type=int, default=None, help="SLURM jobs running at once [64]")
@click.option("--cluster", type=click.Choice(["slurm", "local", "debug"]), default="slurm", show_default=True,
              help="submitit backend of --executor slurm; local and debug run the same jobs on this machine")
def command(grid: str, dry_run: bool, preset: str | None, settings: tuple[str, ...], suite: str | None,
            eval_n: str | None, out: Path, force: bool, wait: bool, device: str, data_root: str | None,
            progress: bool, executor: str, workers: int, partition: str | None, time_min: int | None,
            gpus: int | None, cpus: int | None, array_parallelism: int | None, cluster: str) -> None:
    """Train every run of GRID: a grid file or a shipped grid's name.

    Finished runs are skipped (a finished run lacking attacks of the suite gets only those), partial ones
    resume from their checkpoint, failed ones are retried; a lock file per run keeps two workers off the
    same run. Exits 1 when a run failed or another process holds one.
    """
    flags = {"partition": partition, "time": time_min, "gpus": gpus, "cpus": cpus,
             "array_parallelism": array_parallelism}
    if executor == "local" and any(v is not None for v in flags.values()):
        raise InputError("--partition/--time/--gpus/--cpus/--array-parallelism need --executor slurm")
    spec = load_grid(grid)
    fields, params = parse_settings(settings)
    runs_on = "cuda" if executor == "slurm" else device_type_of(device)  # precision "auto" resolves for it
    configs = expand(spec, preset=preset, fields=fields, params=params, device_type=runs_on)
    evaluation = spec.evaluation(preset, suite, eval_n)
    slurm = SlurmOptions.merge(spec.slurm, flags)
    if dry_run:
        check_results_dir(out)
        statuses = grid_statuses(configs, out, evaluation)
        console = Console(width=WIDTH)
        console.print(plan_table(configs, statuses))
        console.print(overview(len(configs), Counter(statuses.values())), highlight=False)
        return
    execute_grid(configs, evaluation, out, source=f"grid {spec.source}", force=force, wait=wait, device=device,
                 data_root=data_root, progress=progress, executor=executor, workers=workers, slurm=slurm,
                 cluster=cluster)
