"""``write_report``: tables, figures and an ``index.md`` linking them, with the runs used and the problems."""

from __future__ import annotations

import os
from collections.abc import Callable, Collection
from pathlib import Path

import pandas as pd

from bench.core.store import write_text
from bench.report.collect import EVAL_FILES, UNREADABLE, RunProblem, runs_frame, scan
from bench.report.feature_space import FeatureSpace, write_feature_space
from bench.report.figures import FigureFile, write_figures
from bench.report.labels import method_palette
from bench.report.tables import (
    Table,
    bold_rule,
    build_tables,
    differences_markdown,
    runs_csv,
    table_file,
    to_csv,
    to_latex,
    to_markdown,
)
from bench.report.training_table import write_training_tables

#: what each test profile means, stated above its tables
TEST_PROFILE_NOTES = {
    "balanced": "Test set: **balanced** (the full test split or a class-stratified part of it).",
    "lt": "Test set: **lt**, long-tailed (the run's UR applied to the test split): overall accuracy counts "
          "images, *balanced* is the mean per-class accuracy (TAET's balanced accuracy / robustness).",
}


def write_report(results_dir: str | Path, out_dir: str | Path, checkpoint: str = "last", *,
                 per_class_attack: str = "pgd20", run_ids: Collection[str] | None = None,
                 warn: Callable[[str], None] | None = None) -> Path:
    """Write the report of the finished runs under ``results_dir`` into ``out_dir``; return its index.md.

    ``checkpoint`` picks eval.json ("last") or eval-best.json ("best"); ``run_ids`` limits the report to those
    runs (``bench run`` reports the runs it ran). Outputs: ``tables/accuracy_<group>`` as .md/.csv/.tex per
    dataset/arch/UR, ``tables/runs.csv``, ``figures/*.png`` and ``.pdf``, and ``index.md``. Every file is
    written atomically. ``warn`` gets one line per finished run whose records are unreadable (they are left
    out and listed in index.md). Raises BenchError when no run is usable.
    """
    runs, problems = scan(results_dir, checkpoint, run_ids)
    for problem in problems:
        if warn is not None and problem.status == UNREADABLE:
            warn(f"left out {problem.run_id}: {problem.reason}")
    df = runs_frame(runs, results_dir, problems)
    out = Path(out_dir)
    tables = build_tables(df)
    table_files = [(t, _write_table(t, out / "tables", checkpoint)) for t in tables]
    runs_file = write_text(out / "tables" / "runs.csv", runs_csv(df))
    labels = dict(zip(df["run_id"], df["method_label"], strict=True))
    training = write_training_tables(runs, labels, out / "tables")
    palette = method_palette(df["method_label"])
    figures, skipped = write_figures(df, runs, out / "figures", palette, checkpoint, per_class_attack)
    features = write_feature_space(labels, runs, out, palette, checkpoint)
    text = _index(out, Path(results_dir), checkpoint, df, table_files, runs_file, training,
                  figures + features.figures, skipped + features.skipped, problems, features)
    return write_text(out / "index.md", text)


def _write_table(table: Table, folder: Path, checkpoint: str) -> list[Path]:
    stem = f"accuracy_{table.slug}"
    return [write_text(folder / f"{stem}.md", table_file(table)),
            write_text(folder / f"{stem}.csv", to_csv(table)),
            write_text(folder / f"{stem}.tex", to_latex(table, checkpoint))]


def _link(path: Path, out: Path, text: str | None = None) -> str:
    rel = path.relative_to(out).as_posix()
    return f"[{text or rel}]({rel})"


def _cell(text: object) -> str:
    return str(text).replace("|", "\\|")


def _device_counts(devices: pd.Series) -> str:
    """``name (n)`` for each device, most frequent first (ties by name)."""
    counts = devices.value_counts()
    order = sorted(counts.index, key=lambda name: (-counts[name], name))
    return ", ".join(f"{name} ({counts[name]})" for name in order)


def _index(out: Path, results: Path, checkpoint: str, df: pd.DataFrame,
           table_files: list[tuple[Table, list[Path]]], runs_file: Path,
           training: list[tuple[str, Path, Path, str]], figures: list[FigureFile],
           skipped: list[str], problems: list[RunProblem], features: FeatureSpace) -> str:
    try:
        source = Path(os.path.relpath(results.resolve(), out.resolve())).as_posix()
    except ValueError:  # another drive
        source = results.name
    runs = df.drop_duplicates("run_id")
    lines = [
        "# ltbench report", "",
        f"Results: `{source}` (relative to this file); checkpoint **{checkpoint}** "
        f"(`{EVAL_FILES[checkpoint]}`); "
        f"{len(runs)} finished runs used, {len(problems)} unfinished or failed (listed at the end).", "",
        f"Trained on (runs): {_device_counts(runs['trained_on'])}. Evaluated on (run and attack results): "
        f"{_device_counts(df['eval_device'])} "
        "(per run and attack in runs.csv).", "",
        "Accuracies in %. Tables: mean ± sample std over seeds (std only with more than one seed; "
        "`(n=k)` when only k seeds have that attack); **bold**: see the sentence under each table; "
        "*tail* = mean per-class accuracy of the last third of the classes "
        "(C//3, ordered by training count).",
        "", "## Tables", "",
    ]
    for table, paths in table_files:
        md, csv, tex = paths
        note = TEST_PROFILE_NOTES.get(table.test_profile, f"Test set: {table.test_profile}.")
        lines += [f"### {table.title}", "", note, "", to_markdown(table), bold_rule(table), ""]
        differences = differences_markdown(table)
        if differences:
            lines += ["<details><summary>Difference to each column's best row (accuracy points, 95% bootstrap "
                      "interval)</summary>", "", differences, "</details>", ""]
        lines += [f"- Accuracy table, {table.title}: {_link(md, out)} · {_link(csv, out, 'CSV')} "
                  f"(numeric `<metric>_mean`, `<metric>_std`, `n_seeds`, `best`, `bold`, `<metric>_diff`, "
                  f"`_diff_low`, `_diff_high`) · {_link(tex, out, 'LaTeX')} (booktabs)", ""]
    lines += [f"- {_link(runs_file, out)}: every run and attack (accuracy, head, mid, tail, worst, balanced "
              "and per-class accuracy, in %; the devices that trained and evaluated it).", ""]
    if training:
        lines += ["## Training adversarial examples", "",
                  "From each run's metrics.jsonl: the entropy of the training AEs' predicted-label histogram "
                  "(nats; log C when the AEs spread evenly over the C classes), averaged over the epochs that "
                  "crafted AEs, and the last epoch's accuracy on the training AEs; mean ± sample std over seeds.",
                  ""]
        for title, md, csv, markdown in training:
            lines += [f"### {title}", "", markdown, f"- {_link(md, out)} · {_link(csv, out, 'CSV')}", ""]
    if features.tables:
        lines += ["## Feature space", "", "From each run's analysis.json (`bench analyze`); metrics defined in "
                  "docs/analysis.md.", ""]
        for title, caption, paths, markdown in features.tables:
            md, csv, tex = paths
            lines += [f"### {title}", "", markdown, f"- {caption} {_link(md, out)} · {_link(csv, out, 'CSV')} · "
                      f"{_link(tex, out, 'LaTeX')}", ""]
    lines += ["## Figures", ""]
    for fig in figures:
        png, *rest = fig.paths
        others = " ".join(f"({_link(p, out, p.suffix[1:].upper())})" for p in rest)
        lines.append(f"- {_link(png, out)} {others}: {fig.caption}")
    if skipped:
        lines += ["", "Skipped figures (their data is absent):", ""] + [f"- {s}" for s in skipped]
    lines += ["", "## Runs used", "", "| Run | Method | Dataset | Arch | UR | Seed | Precision |",
              "|:--|:--|:--|:--|--:|--:|:--|"]
    lines += [f"| `{r.run_id}` | {_cell(r.method_label)} | {r.dataset} | {r.arch} | {r.ur:g} | {r.seed} | "
              f"{r.precision} |" for r in runs.itertuples()]
    lines += ["", "## Unfinished or failed runs", ""]
    if problems:
        lines += ["| Run | Status | Reason |", "|:--|:--|:--|"]
        lines += [f"| `{p.run_id}` | {p.status} | {_cell(p.reason)} |" for p in problems]
    else:
        lines.append("None.")
    return "\n".join(lines) + "\n"
