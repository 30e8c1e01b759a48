"""``bench run``: train and evaluate one or more methods, then print a comparison table."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from bench.cli.options import parse_settings, training_options
from bench.config import PRESETS, RunConfig, build_config, parse_value
from bench.errors import InputError
from bench.progress import Progress
from bench.runner import resolve_device, run_one


def build_configs(
    methods: str, dataset: str, ur: str, arch: str, preset: str, seed: str, numeric: dict[str, Any],
    settings: tuple[str, ...], device_type: str | None = None,
) -> list[RunConfig]:
    """Validate everything before anything is written: one RunConfig per method."""
    names = [m.strip() for m in methods.split(",") if m.strip()]
    if not names:
        raise InputError("--methods is empty; e.g. --methods pgd-at,reat")
    fields, per_method = parse_settings(settings)
    stray = set(per_method) - set(names)
    if stray:
        raise InputError(f"--set names method(s) {sorted(stray)} that are not in --methods {','.join(names)}")
    overrides = {k: parse_value(v) for k, v in numeric.items() if v is not None} | fields
    return [
        build_config(method=name, dataset=dataset, ur=parse_value(ur), arch=arch, preset=preset,
                     seed=parse_value(seed), overrides=overrides, method_params=per_method.get(name, {}),
                     device_type=device_type)
        for name in names
    ]


def comparison_table(records: list[dict[str, Any]]) -> Table:
    table = Table(title="clean / PGD-20 accuracy (%), overall and tail classes")
    for col in ("method", "clean", "clean tail", "PGD-20", "PGD-20 tail", "run"):
        table.add_column(col, justify="left" if col in ("method", "run") else "right")
    for rec in records:
        attacks = rec["attacks"]
        cells = []
        for key in ("clean", "pgd20"):
            res = attacks.get(key)
            cells += [f"{100 * res['acc']:.2f}", f"{100 * res['tail']:.2f}"] if res else ["-", "-"]
        table.add_row(rec["config"]["method"], *cells, rec["run_id"])
    return table


@click.command("run")
@click.option("--methods", default="pgd-at", show_default=True, help="comma-separated registry names")
@click.option("--dataset", default="fashion-mnist", show_default=True)
@click.option("--ur", default="100", show_default=True, help="imbalance ratio n_max/n_min (>= 1; 1 = balanced)")
@click.option("--arch", default="cnn-small", show_default=True)
@click.option("--preset", default="quick", show_default=True, help=f"one of {', '.join(PRESETS)}")
@click.option("--seed", default="0", show_default=True)
@click.option("--epochs", default=None, help="override the preset's epochs")
@click.option("--batch-size", default=None)
@click.option("--eps", default=None, help="L-inf radius (default 8/255 for 32x32 data, 0.1 for 28x28)")
@click.option("--steps", default=None, help="training PGD steps")
@click.option("--step-size", default=None, help="PGD step (default eps/4)")
@click.option("--lr", default=None)
@click.option("--suite", default=None, help="evaluation suite: fast, paper or full (default: the preset's)")
@click.option("--precision", default=None,
              help="training precision: fp32, bf16 (autocast) or auto (bf16 where the device has it) [auto]")
@click.option("--report-dir", default=None, type=click.Path(file_okay=False, path_type=Path),
              help="where the report of OUT goes [reports/<name of OUT>]")
@click.option("--report/--no-report", "make_report", default=True, help="write tables and plots at the end")
@training_options
def command(methods: str, dataset: str, ur: str, arch: str, preset: str, seed: str, epochs: str | None,
            batch_size: str | None, eps: str | None, steps: str | None, step_size: str | None, lr: str | None,
            suite: str | None, precision: str | None, report_dir: Path | None, make_report: bool,
            settings: tuple[str, ...], out: Path, force: bool, device: str, data_root: str | None,
            progress: bool) -> None:
    """Train and evaluate METHODS on one long-tailed dataset, one after another."""
    numeric = {"epochs": epochs, "batch_size": batch_size, "eps": eps, "steps": steps, "step_size": step_size,
               "lr": lr}
    if suite is not None:
        settings = (*settings, f"eval_suite={suite}")
    if precision is not None:
        settings = (*settings, f"precision={precision}")
    torch_device = resolve_device(device)
    configs = build_configs(methods, dataset, ur, arch, preset, seed, numeric, settings, torch_device.type)
    with Progress(progress) as bar:
        records = [run_one(cfg, out, data_root=data_root, device=torch_device, progress=bar, force=force)
                   for cfg in configs]
    Console(width=160).print(comparison_table(records))
    if make_report:
        from bench.report import write_report  # pandas and seaborn load only when needed

        index = write_report(out, report_dir or Path("reports") / out.resolve().name)
        click.echo(f"report written to {index}")
