"""``bench run``: train and evaluate one or more methods as a one-cell grid, then print the summary table."""

from __future__ import annotations

from pathlib import Path

import click

from bench.cli.execute import execute_grid
from bench.cli.options import parse_settings, training_options
from bench.core.errors import InputError
from bench.evaluation.settings import EvalSettings
from bench.grid.spec import GridSpec, expand
from bench.training.config import DEFAULTS, PRESETS, RunConfig, parse_value


def one_cell_grid(methods: str, dataset: str, ur: str, arch: str, preset: str, seed: str,
                  suite: str | None, eval_n: str | None) -> GridSpec:
    """The grid that `bench run` executes: one dataset, arch, UR and seed; the given methods."""
    names = [m.strip() for m in methods.split(",") if m.strip()]
    if not names:
        raise InputError("--methods is empty; e.g. --methods pgd-at,reat (see `bench list methods`)")
    return GridSpec(source="bench run", datasets=(dataset,), archs=(arch,), urs=(parse_value(ur),),
                    methods=tuple(dict.fromkeys(names)), seeds=(parse_value(seed),), preset=preset, suite=suite,
                    settings={}, sweeps={}, exclude=(), slurm={}, eval_n=eval_n)


def build_runs(methods: str, dataset: str, ur: str, arch: str, preset: str, seed: str, numeric: dict[str, str | None],
               settings: tuple[str, ...], suite: str | None = None,
               eval_n: str | None = None) -> tuple[list[RunConfig], EvalSettings]:
    """Validate everything before anything is written: one RunConfig per method, and the evaluation."""
    spec = one_cell_grid(methods, dataset, ur, arch, preset, seed, suite, eval_n)
    fields, per_method = parse_settings(settings)
    fields = {k: parse_value(v) for k, v in numeric.items() if v is not None} | fields
    return expand(spec, fields=fields, params=per_method), spec.evaluation()


@click.command("run")
@click.option("--methods", default=DEFAULTS.method, show_default=True, help="comma-separated registry names")
@click.option("--dataset", default=DEFAULTS.dataset, show_default=True)
@click.option("--ur", default=f"{DEFAULTS.ur:g}", show_default=True,
              help="imbalance ratio n_max/n_min (>= 1; 1 = balanced)")
@click.option("--arch", default=DEFAULTS.arch, show_default=True)
@click.option("--preset", default=DEFAULTS.preset, show_default=True, help=f"one of {', '.join(PRESETS)}")
@click.option("--seed", default=str(DEFAULTS.seed), show_default=True)
@click.option("--epochs", default=None, help="override the preset's epochs")
@click.option("--batch-size", default=None)
@click.option("--eps", default=None, help="L-inf radius (default 8/255 for 32x32 data, 0.1 for 28x28)")
@click.option("--steps", default=None, help="training PGD steps")
@click.option("--step-size", default=None, help="PGD step (default eps/4)")
@click.option("--lr", default=None)
@click.option("--precision", default=None,
              help="training precision: fp32, bf16 (autocast) or auto (resolved where the run trains) [auto]")
@click.option("--report-dir", default=None, type=click.Path(file_okay=False, path_type=Path),
              help="where the report of this command's runs goes [reports/<name of OUT>]")
@click.option("--report/--no-report", "make_report", default=True, help="write tables and plots at the end")
@training_options
def command(methods: str, dataset: str, ur: str, arch: str, preset: str, seed: str, epochs: str | None,
            batch_size: str | None, eps: str | None, steps: str | None, step_size: str | None, lr: str | None,
            precision: str | None, report_dir: Path | None, make_report: bool, settings: tuple[str, ...],
            suite: str | None, eval_n: str | None, out: Path, force: bool, wait: bool, device: str,
            data_root: str | None, progress: bool) -> None:
    """Train and evaluate METHODS on one long-tailed dataset, one after another (a one-cell grid).

    Finished runs are not retrained (use --force); a killed run resumes from its last epoch.
    """
    numeric = {"epochs": epochs, "batch_size": batch_size, "eps": eps, "steps": steps, "step_size": step_size,
               "lr": lr, "precision": precision}
    configs, evaluation = build_runs(methods, dataset, ur, arch, preset, seed, numeric, settings, suite, eval_n)
    report_dir = report_dir or Path("reports") / out.resolve().name
    if make_report and report_dir.exists() and not report_dir.is_dir():
        raise InputError(f"--report-dir {report_dir} is a file; pass a folder")
    execute_grid(configs, evaluation, out, source="bench run", force=force, wait=wait, device=device,
                 data_root=data_root, progress=progress)
    if make_report:
        from bench.report import write_report  # pandas and seaborn load only when needed

        index = write_report(out, report_dir, run_ids={cfg.run_id for cfg in configs},
                             warn=lambda line: click.echo(line, err=True))
        click.echo(f"report of {'this run' if len(configs) == 1 else f'these {len(configs)} runs'} written to {index}")
