"""``bench perf``: speed comparisons as ratios measured in one run."""

from __future__ import annotations

import click
from rich.console import Console
from rich.table import Table

from bench.perf import run_benchmarks


@click.command("perf")
@click.option("--quick", is_flag=True, help="small sizes (seconds)")
def command(quick: bool) -> None:
    """Time ltbench's hot paths against the straightforward versions, in one process."""
    table = Table(title="ltbench vs straightforward implementations (same process, best of repeats)")
    for col in ("what", "baseline", "seconds", "ltbench", "seconds", "speed-up"):
        table.add_column(col, justify="right" if col in ("seconds", "speed-up") else "left")
    for c in run_benchmarks(quick):
        table.add_row(c.name, c.baseline, f"{c.baseline_seconds:.3f}", c.ltbench, f"{c.ltbench_seconds:.4f}",
                      f"{c.speedup:.1f}x")
    Console(width=160).print(table)
