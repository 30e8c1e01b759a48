"""``bench eval``: run an attack suite on a trained run and print per-class accuracy."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from bench import store
from bench.cli.options import data_root_option, device_option, progress_option
from bench.evaluate import EVAL_BATCH_SIZE, SUITES, SampleCount
from bench.progress import Progress
from bench.runner import evaluate_run, resolve_device


def parse_n(ctx: click.Context, param: click.Parameter, value: str | None) -> SampleCount:
    """``--n``: a positive number of test images or ``all``."""
    if value is None or value == "all":
        return value
    try:
        n = int(value)
    except ValueError:
        n = 0
    if n <= 0:
        raise click.BadParameter(f"expected a positive number of test images or 'all', got {value!r}")
    return n


def per_class_table(record: dict[str, Any], classes: list[str], counts: list[int]) -> Table:
    """Accuracy (%) per class and attack, then the summary rows and the seconds per attack."""
    attacks = record["attacks"]
    title = f"{record['run_id']} ({record['checkpoint']} checkpoint, {record['n_test']} test images)"
    table = Table(title=title)
    table.add_column("class")
    table.add_column("train n", justify="right")
    table.add_column("test n", justify="right")
    for key in attacks:
        table.add_column(f"{key} %", justify="right")
    totals = next(iter(attacks.values()))["per_class_total"] if attacks else [0] * len(classes)
    for c, name in enumerate(classes):
        table.add_row(name, str(counts[c]), str(totals[c]),
                      *(f"{100 * a['per_class_acc'][c]:.1f}" for a in attacks.values()))
    table.add_section()
    for row in ("acc", "head", "mid", "tail", "worst", "balanced"):
        table.add_row(row, "", "", *(f"{100 * a[row]:.2f}" for a in attacks.values()))
    table.add_row("seconds", "", "", *(f"{a['seconds']:.1f}" for a in attacks.values()))
    return table


@click.command("eval")
@click.argument("run_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--suite", default=None, type=click.Choice(list(SUITES)), help="default: the run's suite")
@click.option("--n", "n", default=None, callback=parse_n, metavar="N|all",
              help="test images, the first N/C of every class (default: the run's eval_n)")
@click.option("--batch-size", default=EVAL_BATCH_SIZE, show_default=True, type=click.IntRange(min=1))
@click.option("--checkpoint", default="last", show_default=True, type=click.Choice(["last", "best"]))
@click.option("--eps", default=None, type=click.FloatRange(min=0), help="L-inf radius (default: the run's)")
@click.option("--step-size", default=None, type=click.FloatRange(min=0),
              help="PGD/CW step (default: the run's; eps/4 with --eps)")
@click.option("--precision", default="fp32", show_default=True, type=click.Choice(["fp32", "bf16"]),
              help="bf16: attacks under bf16 autocast (faster on bf16 hardware, recorded with the results)")
@device_option
@data_root_option
@progress_option
def command(run_dir: Path, suite: str | None, n: SampleCount, batch_size: int, checkpoint: str,
            eps: float | None, step_size: float | None, precision: str, device: str, data_root: str | None,
            progress: bool) -> None:
    """Evaluate RUN_DIR's checkpoint; results go to eval.json (eval-best.json for --checkpoint best).

    Each attack is saved when it finishes; a re-run skips attacks done with the same parameters and images.
    """
    with Progress(progress) as bar:
        record = evaluate_run(run_dir, data_root=data_root, device=resolve_device(device), progress=bar,
                              suite=suite, n=n, batch_size=batch_size, checkpoint=checkpoint, eps=eps,
                              step_size=step_size, precision=precision)
    config = store.read_json(run_dir / store.CONFIG_FILE)
    Console(width=160).print(per_class_table(record, config["classes"], config["class_counts"]))
