"""``bench analyze``: feature-space metrics and t-SNE maps of trained runs, clean and under attack."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from bench.cli.options import data_root_option, device_option, parse_n, progress_option
from bench.core.device import resolve_device
from bench.core.progress import Progress
from bench.evaluation.settings import EVAL_BATCH_SIZE
from bench.evaluation.suite import SampleCount

#: group means shown per run: metric key -> column title
SHOWN = {"separation": "sep", "fisher": "Fisher", "ncm_acc": "NCM acc"}


def summary_table(records: list[dict[str, Any]]) -> Table:
    """Head / mid / tail means of the main metrics per run and condition."""
    table = Table(title="feature space: head / mid / tail means (sep = nearest-centroid distance / spread)")
    for name in ("run", "images", *SHOWN.values(), "tail KL"):
        table.add_column(name, justify="left" if name in ("run", "images") else "right")
    for record in records:
        for key, cond in record["conditions"].items():
            cells = [" / ".join(f"{cond['groups'][metric][g]:.2f}" for g in ("head", "mid", "tail"))
                     for metric in SHOWN]
            table.add_row(record["run_id"], key, *cells, f"{cond['tail_kl']:.3f}")
    return table


@click.command("analyze")
@click.argument("path", type=click.Path(file_okay=False, path_type=Path))
@click.option("--n", "n", default="1000", show_default=True, callback=parse_n, metavar="N|all",
              help="test images, the first N/C of every class (the evaluator's subset rule)")
@click.option("--attack", default="pgd20", show_default=True, type=click.Choice(["fgsm", "pgd20", "pgd100", "cw100"]),
              help="attack whose examples are analysed (the evaluator's parameters for the run)")
@click.option("--checkpoint", default="last", show_default=True, type=click.Choice(["last", "best"]))
@click.option("--batch-size", default=EVAL_BATCH_SIZE, show_default=True, type=click.IntRange(min=1),
              help="attack batch size; equal to the evaluation's, the examples are eval.json's")
@click.option("--save-features", is_flag=True, help="also keep the raw features (analysis-features.npz)")
@device_option
@data_root_option
@progress_option
def command(path: Path, n: SampleCount, attack: str, checkpoint: str, batch_size: int, save_features: bool,
            device: str, data_root: str | None, progress: bool) -> None:
    """Analyse the penultimate features of PATH (a run folder, or every finished run below a results folder).

    Writes analysis.json (analysis-best.json) and the t-SNE maps analysis-tsne.npz into each run folder;
    `bench report` draws them. A rerun with the same settings skips analysed runs.
    """
    from bench.analysis import analyze_path  # scikit-learn loads only for this command

    with Progress(progress) as bar:
        records = analyze_path(path, progress=bar, n=None if n == "all" else n, attack=attack,
                               checkpoint=checkpoint, batch_size=batch_size, save_features=save_features,
                               data_root=data_root, device=resolve_device(device))
    Console(width=200).print(summary_table(records))
