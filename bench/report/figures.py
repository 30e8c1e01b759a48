"""Which figures a report gets: build each from the collected runs, save it, or say why it is skipped."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from bench.evaluation.protocol import default_step
from bench.report import plots
from bench.report.collect import Run, load_metrics
from bench.report.files import save_figure
from bench.report.labels import attack_name, group_slug, group_title, method_sort_key
from bench.report.plots import Palette

#: methods whose AE predicted-label distributions are compared (the paper's motivating figure)
AE_METHODS = ("pgd-at", "rbl", "reat")
#: per-epoch test accuracies of metrics.jsonl drawn as training curves, with their axis labels
CURVES = {"test_clean_acc": "clean test accuracy (%)", "test_pgd20_acc": "PGD-20 test accuracy (%)"}
_ROBUST = "pgd20"
#: a method needs results at this many URs (or at every UR of the group, if fewer) to be drawn against UR
SWEEP_URS = 3
#: strongest attacks that also get a per-class figure where a group has their results
EXTRA_PER_CLASS = ("aa",)
#: save(figure, file stem, caption)
Save = Callable[[Figure, str, str], None]


@dataclass(frozen=True)
class FigureFile:
    """A saved figure (PNG first, then PDF) and its one-line caption."""

    paths: list[Path]
    caption: str


def write_figures(df: pd.DataFrame, runs: list[Run], out_dir: Path, palette: Palette, checkpoint: str,
                  per_class_attack: str = _ROBUST) -> tuple[list[FigureFile], list[str]]:
    """Save every figure the data allows under ``out_dir``; return them and the skipped ones with reasons."""
    df = df.rename(columns={"method_label": "Method"})
    epochs = _metrics_frame(runs)
    saved: list[FigureFile] = []
    skipped: list[str] = []

    def save(fig: Figure, name: str, caption: str) -> None:
        saved.append(FigureFile(save_figure(fig, out_dir / name), caption))

    with plots.style():
        for (dataset, arch, ur), g in df.groupby(["dataset", "arch", "ur"], sort=True):
            title, slug = group_title(dataset, arch, ur), group_slug(dataset, arch, ur)
            where = f"{title}, {checkpoint} checkpoint"
            for attack in dict.fromkeys([per_class_attack, *(a for a in EXTRA_PER_CLASS if a in set(g["attack"]))]):
                _per_class_figure(g, attack, palette, where, title, slug, save, skipped)
            _bars_figure(g, palette, where, title, slug, save)
            _ae_figure(g, epochs, title, slug, save, skipped)
            _curves_figure(g, epochs, palette, title, slug, save, skipped)
            _eps_figures(g, runs, palette, where, title, slug, save)
        for (dataset, arch), g in df.groupby(["dataset", "arch"], sort=True):
            _scatter_and_ur(g, palette, group_title(dataset, arch), group_slug(dataset, arch), checkpoint,
                            save, skipped)
    return saved, skipped


def _per_class_figure(g: pd.DataFrame, attack: str, palette: Palette, where: str, title: str, slug: str,
                      save: Save, skipped: list[str]) -> None:
    name = attack_name(attack)
    sub = g[g["attack"] == attack]
    if sub.empty:
        skipped.append(f"Per-class {name} accuracy, {title}: no run has {name} results.")
        return
    rows = [{"Method": r.Method, "class_idx": i, "acc": v * 100}
            for r in sub.itertuples() for i, v in enumerate(r.per_class_acc)]
    first = sub.iloc[0]
    save(plots.per_class(pd.DataFrame(rows), first.classes, first.class_counts, attack, palette,
                         f"Per-class {name} accuracy · {title}"),
         f"per-class-{attack}_{slug}",
         f"Per-class {name} accuracy (%) by method ({where}); classes head to tail with training counts, "
         "band = sd over seeds.")


def _bars_figure(g: pd.DataFrame, palette: Palette, where: str, title: str, slug: str, save: Save) -> None:
    bars = g[["run_id", "Method", "attack", "head", "mid", "tail"]].melt(
        id_vars=["run_id", "Method", "attack"], var_name="group", value_name="acc")
    save(plots.group_bars(bars.assign(acc=bars["acc"] * 100), palette, f"Head / mid / tail · {title}"),
         f"head-mid-tail_{slug}",
         f"Mean per-class accuracy (%) of the head, mid and tail thirds per attack ({where}); "
         "error bars = sd over seeds.")


def _metrics_frame(runs: list[Run]) -> pd.DataFrame:
    """One row per (run, epoch) of metrics.jsonl: run_id, epoch, ae_pred_hist and the CURVES columns."""
    frames = []
    for run in runs:
        metrics = load_metrics(run)
        if metrics is not None:
            columns = ["epoch", "ae_pred_hist", *CURVES]
            frames.append(metrics.reindex(columns=columns).assign(run_id=run.run_id))
    if not frames:
        return pd.DataFrame(columns=["run_id", "epoch", "ae_pred_hist", *CURVES])
    return pd.concat(frames, ignore_index=True)


def _ae_figure(g: pd.DataFrame, epochs: pd.DataFrame, title: str, slug: str, save: Save,
               skipped: list[str]) -> None:
    first = g.iloc[0]
    n_classes = len(first.classes)
    runs = g[g["method"].isin(AE_METHODS)].drop_duplicates("run_id")
    hists = epochs[epochs["run_id"].isin(runs["run_id"])].dropna(subset=["ae_pred_hist"])
    usable = [isinstance(h, list) and len(h) == n_classes and sum(h) > 0 for h in hists["ae_pred_hist"]]
    hists = hists.loc[usable]
    runs = runs[runs["run_id"].isin(hists["run_id"])]
    if runs.empty:
        skipped.append(f"AE predicted-label distribution, {title}: no {'/'.join(AE_METHODS)} run has "
                       f"ae_pred_hist with {n_classes} counts in metrics.jsonl.")
        return
    counts = runs.groupby("seed")["Method"].nunique()
    seed = int(counts[counts == counts.max()].index.min())
    panels = []
    for run in sorted(runs[runs["seed"] == seed].itertuples(), key=lambda r: method_sort_key(r.Method)):
        rows = hists[hists["run_id"] == run.run_id]
        matrix = np.array(rows["ae_pred_hist"].tolist(), dtype=float).T
        shares = 100 * matrix / matrix.sum(axis=0, keepdims=True)
        panels.append((run.Method, pd.DataFrame(shares, columns=rows["epoch"].astype(int).tolist())))
    save(plots.ae_distribution(panels, first.classes, first.class_counts,
                               f"Predicted labels of training AEs · {title} · seed {seed}"),
         f"ae-pred-dist_{slug}_s{seed}",
         f"Share (%) of each epoch's training adversarial examples predicted as each class, per method "
         f"({title}, seed {seed}); rows head to tail.")


def _curves_figure(g: pd.DataFrame, epochs: pd.DataFrame, palette: Palette, title: str, slug: str, save: Save,
                   skipped: list[str]) -> None:
    runs = g.drop_duplicates("run_id")[["run_id", "Method", "seed"]]
    data = epochs.merge(runs, on="run_id")
    columns = {c: label for c, label in CURVES.items()
               if pd.to_numeric(data[c], errors="coerce").notna().any()}
    if not columns:
        skipped.append(f"Training curves, {title}: no run has per-epoch test accuracies in metrics.jsonl.")
        return
    data = data.assign(epoch=data["epoch"].astype(int), **{c: pd.to_numeric(data[c], errors="coerce") * 100
                                                            for c in columns})
    save(plots.training_curves(data, palette, columns, f"Training curves · {title}"),
         f"curves_{slug}",
         f"Per-epoch test accuracies (%) from metrics.jsonl ({title}); band = sd over seeds.")


def radius_frame(runs: list[Run]) -> pd.DataFrame:
    """One row per (run, attack other than clean, radius) of the runs' results at the protocol of their own
    results but another radius: same precision and test images, the step the radius gets by default
    (``protocol.default_step``). Columns run_id, attack, eps, train_eps, acc and tail (%)."""
    rows = []
    for run in runs:
        own, *_ = run.blocks
        run_eps, run_step = float(run.config["eps"]), float(run.config["step_size"])
        for block in run.blocks:
            p = block.protocol
            if (p.precision, p.test_profile, p.n_test) != (own.protocol.precision, own.protocol.test_profile,
                                                           own.protocol.n_test) \
                    or p.step_size != default_step(p.eps, run_eps, run_step):
                continue
            rows += [{"run_id": run.run_id, "attack": key, "eps": p.eps, "train_eps": run_eps,
                      "acc": 100 * float(res["acc"]), "tail": 100 * float(res["tail"])}
                     for key, res in block.attacks.items() if key != "clean"]
    return pd.DataFrame(rows, columns=["run_id", "attack", "eps", "train_eps", "acc", "tail"])


def _eps_figures(g: pd.DataFrame, runs: list[Run], palette: Palette, where: str, title: str, slug: str,
                 save: Save) -> None:
    """Accuracy against eps per attack that runs of the group have at two or more radii (those runs only)."""
    group = g.drop_duplicates("run_id")[["run_id", "Method"]]
    data = radius_frame([r for r in runs if r.run_id in set(group["run_id"])]).merge(group, on="run_id")
    for attack, sub in data.groupby("attack", sort=False):
        sub = sub[sub.groupby("run_id")["eps"].transform("nunique") >= 2]
        if sub.empty:
            continue
        name = attack_name(str(attack))
        train_eps = sorted(sub["train_eps"].unique())
        save(plots.accuracy_vs_eps(sub, palette, str(attack), train_eps, f"{name} accuracy vs eps · {title}"),
             f"acc-vs-eps-{attack}_{slug}",
             f"{name} accuracy (%), overall and tail, against the attack radius eps ({where}; runs evaluated at "
             "two or more radii, on their own test images and precision; step eps/4, the run's own at its "
             "training eps, the dotted line); error bars = sd over seeds where a radius has several.")


def _scatter_and_ur(g: pd.DataFrame, palette: Palette, title: str, slug: str, checkpoint: str,
                    save: Save, skipped: list[str]) -> None:
    name = attack_name(_ROBUST)
    wide = g.pivot_table(index=["run_id", "Method", "ur"], columns="attack", values="acc").mul(100)
    if not {"clean", _ROBUST} <= set(wide.columns):
        skipped.append(f"Robust vs clean and accuracy vs UR, {title}: needs clean and {name} results.")
        return
    points = wide.dropna(subset=["clean", _ROBUST]).reset_index()
    points = points.assign(UR=points["ur"].map("{:g}".format), robust=points[_ROBUST])
    save(plots.robust_vs_clean(points, palette, _ROBUST, f"{name} vs clean accuracy · {title}"),
         f"robust-vs-clean_{slug}",
         f"Clean against {name} accuracy (%), one point per run ({title}, {checkpoint} checkpoint).")
    robust = g[g["attack"] == _ROBUST]
    urs = sorted(robust["ur"].unique())
    if len(urs) < 2:
        skipped.append(f"Accuracy vs UR, {title}: only one imbalance ratio (UR {urs[0]:g}).")
        return
    # a UR sweep over a few methods: draw those, not the methods run at two URs only
    ur_counts = robust.groupby("Method")["ur"].nunique()
    swept = ur_counts[ur_counts >= min(SWEEP_URS, ur_counts.max())].index
    robust = robust[robust["Method"].isin(swept)]
    data = robust.assign(acc=robust["acc"] * 100, tail=robust["tail"] * 100)
    save(plots.accuracy_vs_ur(data, palette, _ROBUST, f"{name} accuracy vs imbalance ratio · {title}"),
         f"acc-vs-ur_{slug}",
         f"{name} accuracy (%), overall and tail, against UR on a log axis ({title}, {checkpoint} checkpoint; "
         f"methods run at {min(SWEEP_URS, ur_counts.max())} or more URs); band = sd over seeds where a UR has "
         "several.")
