"""``bench report``: tables and plots of a results folder, written to a report folder."""

from __future__ import annotations

from pathlib import Path

import click

from bench.core.errors import InputError


@click.command("report")
@click.argument("results_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("-o", "--out", default=None, type=click.Path(file_okay=False, path_type=Path),
              help="report folder [reports/<name of RESULTS_DIR>]")
@click.option("--checkpoint", type=click.Choice(["last", "best"]), default="last", show_default=True,
              help="which evaluation of each run to report (eval.json or eval-best.json)")
def command(results_dir: Path, out: Path | None, checkpoint: str) -> None:
    """Write comparison tables and plots of the runs in RESULTS_DIR to OUT/index.md."""
    from bench.report import write_report  # pandas and seaborn load only for this command

    if not results_dir.is_dir():
        raise InputError(f"no results folder {results_dir}; train with `bench run` or `bench grid` first")
    out = out or Path("reports") / results_dir.resolve().name
    for path in (out, *out.parents):
        if path.exists() and not path.is_dir():
            raise InputError(f"report folder {out}: {path} is a file; pass a folder with -o")
    index = write_report(results_dir, out, checkpoint=checkpoint, warn=lambda line: click.echo(line, err=True))
    click.echo(f"report written to {index}")
