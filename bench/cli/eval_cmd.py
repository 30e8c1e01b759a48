"""``bench eval``: run an attack suite on a trained run and print per-class accuracy."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from bench import store
from bench.cli.options import data_root_option, device_option, progress_option
from bench.evaluate import SUITES, check_n
from bench.progress import Progress
from bench.runner import evaluate_run, resolve_device


def per_class_table(record: dict[str, Any], classes: list[str], counts: list[int]) -> Table:
    attacks = record["attacks"]
    table = Table(title=f"{record['run_id']} ({record['checkpoint']} checkpoint, {record['n_test']} test images)")
    table.add_column("class")
    table.add_column("train n", justify="right")
    for key in attacks:
        table.add_column(f"{key} %", justify="right")
    for c, name in enumerate(classes):
        table.add_row(name, str(counts[c]), *(f"{100 * a['per_class_acc'][c]:.1f}" for a in attacks.values()))
    table.add_section()
    for row in ("acc", "head", "mid", "tail", "worst", "balanced"):
        table.add_row(row, "", *(f"{100 * a[row]:.2f}" for a in attacks.values()))
    return table


@click.command("eval")
@click.argument("run_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--suite", default=None, type=click.Choice(list(SUITES)), help="default: the run's suite")
@click.option("--n", "n", default=None, type=int, help="test images (stratified first-N per class; default all)")
@click.option("--batch-size", default=500, show_default=True, type=int)
@click.option("--checkpoint", default="last", show_default=True, type=click.Choice(["last", "best"]))
@device_option
@data_root_option
@progress_option
def command(run_dir: Path, suite: str | None, n: int | None, batch_size: int, checkpoint: str, device: str,
            data_root: str | None, progress: bool) -> None:
    """Evaluate RUN_DIR's checkpoint; results go to eval.json (eval-best.json for --checkpoint best)."""
    check_n(n)
    with Progress(progress) as bar:
        record = evaluate_run(run_dir, data_root=data_root, device=resolve_device(device), progress=bar,
                              suite=suite, n=n, batch_size=batch_size, checkpoint=checkpoint)
    config = store.read_json(run_dir / store.CONFIG_FILE)
    Console(width=160).print(per_class_table(record, config["classes"], config["class_counts"]))
