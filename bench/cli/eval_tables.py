"""The per-class table that `bench eval` prints for one run (a trained run or an outside model)."""

from __future__ import annotations

from typing import Any

from rich.table import Table


def per_class_table(record: dict[str, Any], classes: list[str], counts: list[int]) -> Table:
    """Accuracy (%) per class and attack, then the summary rows and the seconds per attack."""
    attacks = record["attacks"]
    title = (f"{record['run_id']} ({record['checkpoint']} checkpoint, eps {record['eps']:g}, {record['precision']}, "
             f"{record['n_test']} test images)")
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
