"""The training AEs per method: how evenly their predicted labels spread over the classes (metrics.jsonl).

Per dataset / arch / UR, one row per method: the entropy (nats) of the AEs' predicted-label histogram,
averaged over the epochs that crafted AEs (``attack_steps`` > 0), and the last epoch's training accuracy on
the AEs; mean ± sample std over seeds. This is what the rbl_mode=logit extension is judged by.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from bench.core.store import write_text
from bench.report.collect import Run, load_metrics
from bench.report.labels import group_slug, group_title, method_sort_key
from bench.report.tables import pipe_table

#: table columns: per-run value -> header
COLUMNS = {"ae_entropy": "AE label entropy (nats)", "train_adv_acc": "Train AE acc., last epoch (%)"}


def _run_values(run: Run) -> dict[str, float] | None:
    metrics = load_metrics(run)
    if metrics is None or "ae_pred_entropy" not in metrics:
        return None
    attacked = metrics[metrics["attack_steps"] > 0] if "attack_steps" in metrics else metrics
    attacked = attacked.dropna(subset=["ae_pred_entropy"])
    if attacked.empty:
        return None
    last = metrics.iloc[-1].get("train_adv_acc")
    return {"ae_entropy": float(attacked["ae_pred_entropy"].mean()),
            "train_adv_acc": float(last) * 100 if pd.notna(last) else float("nan")}


def training_frame(runs: list[Run], labels: dict[str, str]) -> pd.DataFrame:
    """One row per run with readable metrics.jsonl: group fields, method label, seed and the COLUMNS values."""
    rows = []
    for run in runs:
        values = _run_values(run)
        if values is not None and run.run_id in labels:
            c = run.config
            rows.append({"dataset": c["dataset"], "arch": c["arch"], "ur": float(c["ur"]),
                         "method": labels[run.run_id], "seed": int(c["seed"]), **values})
    return pd.DataFrame(rows, columns=["dataset", "arch", "ur", "method", "seed", *COLUMNS])


def _cell(mean: float, std: float, n: int, digits: int) -> str:
    if pd.isna(mean):
        return "–"
    return f"{mean:.{digits}f}" + (f" ± {std:.{digits}f}" if n > 1 else "")


def write_training_tables(runs: list[Run], labels: dict[str, str], folder: Path) -> list[tuple[str, Path, Path, str]]:
    """Write ``training-aes_<group>.md`` / ``.csv`` per group; return (title, md, csv, markdown) per table."""
    frame = training_frame(runs, labels)
    out = []
    for (dataset, arch, ur), g in frame.groupby(["dataset", "arch", "ur"], sort=True):
        order = sorted(g["method"].unique(), key=method_sort_key)
        stats = g.groupby("method")[list(COLUMNS)].agg(["mean", "std", "count"]).reindex(order)
        stats.columns = [f"{metric}_{part}" for metric, part in stats.columns]
        header = ["Method", "Seeds", *COLUMNS.values()]
        rows = [[label.replace("|", "\\|"), str(int(stats.at[label, "ae_entropy_count"])),
                 *(_cell(stats.at[label, f"{m}_mean"], stats.at[label, f"{m}_std"],
                         int(stats.at[label, f"{m}_count"]), 3 if m == "ae_entropy" else 2) for m in COLUMNS)]
                for label in order]
        markdown = pipe_table(header, rows)
        title = group_title(dataset, arch, ur)
        slug = group_slug(dataset, arch, ur)
        csv = stats.drop(columns=[f"{m}_count" for m in COLUMNS if m != "ae_entropy"])
        csv = csv.rename(columns={"ae_entropy_count": "n_seeds"}).reset_index()
        md_path = write_text(folder / f"training-aes_{slug}.md", f"# Training AEs · {title}\n\n{markdown}")
        csv_path = write_text(folder / f"training-aes_{slug}.csv",
                              csv.to_csv(index=False, float_format="%.4f", lineterminator="\n"))
        out.append((title, md_path, csv_path, markdown))
    return out
