"""``bench grid``: expand a grid file and train its runs with local workers or SLURM jobs."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from bench.cli.execute import STYLE, WIDTH, check_results_dir, execute_grid, grid_statuses, overview
from bench.cli.options import WorkersParam, parse_settings, training_options
from bench.core.errors import InputError
from bench.grid.executors import Workers
from bench.grid.slurm import SlurmOptions, job_states, parse_options
from bench.grid.spec import changed_params, expand, load_grid
from bench.training.config import RunConfig


def plan_table(configs: Sequence[RunConfig], statuses: dict[str, str], jobs: dict[str, str]) -> Table:
    """The expanded runs that ``--dry-run`` lists, with their SLURM job and its state where ``jobs`` has one."""
    table = Table(title=f"{len(configs)} runs")
    columns = ("run_id", "dataset", "arch", "UR", "method", "params", "status", *(("slurm job",) if jobs else ()))
    for col in columns:
        table.add_column(col, justify="right" if col == "UR" else "left", no_wrap=col in ("run_id", "slurm job"))
    for cfg in configs:
        status = statuses[cfg.run_id]
        params = ", ".join(f"{k}={v}" for k, v in changed_params(cfg).items())
        job = (jobs.get(cfg.run_id, ""),) if jobs else ()
        table.add_row(cfg.run_id, cfg.dataset, cfg.arch, f"{cfg.ur:g}", cfg.method, escape(params),
                      f"[{STYLE[status]}]{status}", *job)
    return table


@click.command("grid")
@click.argument("grid")
@click.option("--dry-run", is_flag=True, help="list the expanded runs and their status; train nothing")
@click.option("--preset", default=None, help="override the file's preset for every run (e.g. smoke)")
@training_options
@click.option("--executor", type=click.Choice(["local", "slurm"]), default="local", show_default=True)
@click.option("--workers", type=WorkersParam(), default="1", show_default=True,
              help="local worker processes (each trains its runs one after another on one device); auto: one "
                   "per core on a CPU; on CUDA from free memory, at most CUDA_WORKERS_CAP (docs/performance.md)")
@click.option("--partition", default=None, help="SLURM partition [grid file [slurm] partition]")
@click.option("--time", "time_min", type=int, default=None, help="SLURM time limit per run in minutes [1440]")
@click.option("--gpus", type=int, default=None, help="GPUs per SLURM job [1]")
@click.option("--cpus", type=int, default=None, help="CPUs per SLURM task [8]")
@click.option("--array-parallelism", type=int, default=None, help="SLURM jobs running at once [64]")
@click.option("--mem", default=None, help="SLURM memory per job, e.g. 16G [the cluster's default]")
@click.option("--account", default=None, help="SLURM account to charge")
@click.option("--qos", default=None, help="SLURM quality of service")
@click.option("--constraint", default=None, help="SLURM node features the job needs, e.g. a100")
@click.option("--slurm-option", "slurm_options", multiple=True, metavar="KEY=VALUE",
              help="any further sbatch option (mail-type=END; a bare KEY for a flag such as exclusive)")
@click.option("--max-retries", type=int, default=None,
              help="times a job is requeued after a time-out or preemption, resuming its run [3]")
@click.option("--cluster", type=click.Choice(["slurm", "local", "debug"]), default="slurm", show_default=True,
              help="submitit backend of --executor slurm; local and debug run the same jobs on this machine")
def command(grid: str, dry_run: bool, preset: str | None, settings: tuple[str, ...], suite: str | None,
            eval_n: str | None, out: Path, force: bool, wait: bool, device: str, data_root: str | None,
            progress: bool, executor: str, workers: Workers, partition: str | None, time_min: int | None,
            gpus: int | None, cpus: int | None, array_parallelism: int | None, mem: str | None, account: str | None,
            qos: str | None, constraint: str | None, slurm_options: tuple[str, ...], max_retries: int | None,
            cluster: str) -> None:
    """Train every run of GRID: a grid file or a shipped grid's name.

    Finished runs are skipped (a finished run lacking attacks of the suite, or results at a radius of the
    file's eval_eps, gets only those), partial ones resume from their checkpoint, failed ones are retried; a
    lock file per run keeps two workers off the same run. Exits 1 when a run failed or another process holds
    one. With ``--executor slurm`` each run is a job of one job array; a job that times out or is preempted is
    requeued and resumes its run.
    """
    flags = {"partition": partition, "time": time_min, "gpus": gpus, "cpus": cpus,
             "array_parallelism": array_parallelism, "mem": mem, "account": account, "qos": qos,
             "constraint": constraint, "options": parse_options(slurm_options) or None, "max_retries": max_retries}
    if executor == "local" and any(v is not None for v in flags.values()):
        raise InputError("--partition/--time/--gpus/--cpus/--array-parallelism/--mem/--account/--qos/--constraint/"
                         "--slurm-option/--max-retries need --executor slurm")
    spec = load_grid(grid)
    fields, params = parse_settings(settings)
    configs = expand(spec, preset=preset, fields=fields, params=params)
    evaluation = spec.evaluation(preset, suite, eval_n)
    slurm = SlurmOptions.merge(spec.slurm, flags)
    if dry_run:
        check_results_dir(out)
        statuses = grid_statuses(configs, out, evaluation, spec.eval_eps)
        console = Console(width=WIDTH)
        console.print(plan_table(configs, statuses, job_states(out)))
        console.print(overview(len(configs), Counter(statuses.values())), highlight=False)
        return
    execute_grid(configs, evaluation, out, source=f"grid {spec.source}", force=force, wait=wait, device=device,
                 data_root=data_root, progress=progress, executor=executor, workers=workers, slurm=slurm,
                 cluster=cluster, eval_eps=spec.eval_eps)
