"""The feature-space part of a report, from each run's analysis.json (written by ``bench analyze``).

Per dataset / arch / UR: t-SNE maps side by side per method (clean and under attack), per-class separability
against class index, and a head / mid / tail table (Markdown, CSV, LaTeX). Runs are compared only when they
were analysed on the same test images with the same attack; the most common such setting is used.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bench.core.store import write_text
from bench.report import feature_plots
from bench.report.collect import Run
from bench.report.figures import FigureFile
from bench.report.files import save_figure
from bench.report.labels import attack_name, group_slug, group_title, method_sort_key
from bench.report.plots import Palette, style
from bench.report.protocol import attack_protocol
from bench.report.tables import latex_escape

ANALYSIS_FILES = {"last": "analysis.json", "best": "analysis-best.json"}
#: per-class metrics drawn against class index: key -> axis label
CURVE_METRICS = {"separation": "nearest-centroid distance / spread", "fisher": "Fisher ratio (log)",
                 "ncm_acc": "nearest-class-mean accuracy (%)", "kl_other": "KL to other classes (nats)"}
#: table columns: (metric, group) -> header; NCM accuracy in %
TABLE_COLUMNS = {**{("separation", g): f"Sep. {g}" for g in ("head", "mid", "tail")},
                 **{("fisher", g): f"Fisher {g}" for g in ("head", "mid", "tail")},
                 **{("ncm_acc", g): f"NCM {g} %" for g in ("head", "mid", "tail")},
                 ("tail_kl", ""): "Tail KL"}


@dataclass(frozen=True)
class Analysis:
    """One run's analysis record with its method label and, when readable, its t-SNE maps."""

    run: Run
    label: str
    record: dict[str, Any]
    maps: dict[str, np.ndarray] | None

    @property
    def setting(self) -> str:
        """What must agree for runs to be compared: images, attack and its parameters (``protocol``)."""
        p = self.record["params"]
        attack = attack_protocol(p["attack_params"], self.run.config["seed"])
        return json.dumps([p["n_test"], p["subset_rule"], p["attack"], attack], sort_keys=True)


@dataclass
class FeatureSpace:
    """What ``write_feature_space`` produced: tables (title, caption, files, markdown), figures, skip reasons."""

    tables: list[tuple[str, str, list[Path], str]] = field(default_factory=list)
    figures: list[FigureFile] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    runs: list[str] = field(default_factory=list)


def load_analyses(runs: list[Run], labels: dict[str, str], checkpoint: str, skipped: list[str]) -> list[Analysis]:
    """The runs' analysis records (unreadable ones are listed in ``skipped``)."""
    out = []
    for run in runs:
        path = run.path / ANALYSIS_FILES[checkpoint]
        if not path.exists():
            continue
        try:
            record = json.loads(path.read_text())
            missing = {"params", "conditions", "classes", "class_counts", "groups"} - set(record)
            if missing:
                raise ValueError(f"lacks {', '.join(sorted(missing))}")
        except (OSError, ValueError, TypeError) as err:
            skipped.append(f"Feature space of {run.run_id}: unreadable {path.name} ({err}); rerun `bench analyze`.")
            continue
        maps = None
        maps_path = run.path / record.get("files", {}).get("tsne", "")
        if maps_path.is_file():
            with np.load(maps_path) as npz:
                maps = {key: npz[key] for key in npz.files}
        out.append(Analysis(run, labels[run.run_id], record, maps))
    return out


def _conditions(analysis: Analysis) -> list[str]:
    return ["clean", analysis.record["params"]["attack"]]


def _tidy(analyses: list[Analysis]) -> pd.DataFrame:
    """One row per (run, condition, metric, class) with the per-class value (inf drawn as missing)."""
    rows = []
    for a in analyses:
        for cond in _conditions(a):
            per_class = a.record["conditions"][cond]["per_class"]
            for metric in CURVE_METRICS:
                for c, value in enumerate(per_class[metric]):
                    value = float(value) * (100 if metric == "ncm_acc" else 1)
                    rows.append({"run_id": a.run.run_id, "Method": a.label, "seed": a.run.config["seed"],
                                 "condition": attack_name(cond), "metric": metric, "class_idx": c,
                                 "value": value if math.isfinite(value) else np.nan})
    return pd.DataFrame(rows)


def _group_stats(analyses: list[Analysis]) -> pd.DataFrame:
    """Mean and sample std over seeds of every table column, indexed by (method, condition)."""
    rows = []
    for a in analyses:
        for cond in _conditions(a):
            res = a.record["conditions"][cond]
            row = {"method": a.label, "condition": attack_name(cond)}
            for (metric, group), header in TABLE_COLUMNS.items():
                value = res["tail_kl"] if metric == "tail_kl" else res["groups"][metric][group]
                row[header] = float(value) * (100 if metric == "ncm_acc" else 1)
            rows.append(row)
    frame = pd.DataFrame(rows)
    stats = frame.groupby(["method", "condition"], sort=False).agg(["mean", "std", "count"])
    order = sorted(stats.index, key=lambda k: (method_sort_key(k[0]), k[1] != "Clean"))
    return stats.reindex(pd.MultiIndex.from_tuples(order, names=["method", "condition"]))


def _cell(stats: pd.DataFrame, key: tuple[str, str], header: str, pm: str) -> str:
    mean, std, n = (stats.at[key, (header, s)] for s in ("mean", "std", "count"))
    if pd.isna(mean):
        return "–"
    if math.isinf(mean):
        return "inf"
    digits = 3 if header == TABLE_COLUMNS[("tail_kl", "")] else 2  # KL values are about 0.1 nats
    return f"{mean:.{digits}f}" + (f" {pm} {std:.{digits}f}" if n > 1 else "")


def table_markdown(stats: pd.DataFrame) -> str:
    headers = ["Method", "Images", *TABLE_COLUMNS.values()]
    lines = ["| " + " | ".join(headers) + " |", "|:--|:--|" + "--:|" * len(TABLE_COLUMNS)]
    for key in stats.index:
        cells = [key[0].replace("|", "\\|"), key[1], *(_cell(stats, key, h, "±") for h in TABLE_COLUMNS.values())]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def table_csv(stats: pd.DataFrame, dataset: str, arch: str, ur: float) -> str:
    flat = pd.DataFrame(index=stats.index)
    for header in TABLE_COLUMNS.values():
        name = header.lower().replace(" %", "").replace(". ", "_").replace(" ", "_")
        flat[f"{name}_mean"], flat[f"{name}_std"] = stats[(header, "mean")], stats[(header, "std")]
    flat["n_seeds"] = stats[(next(iter(TABLE_COLUMNS.values())), "count")].astype(int)
    out = flat.reset_index()
    out.insert(0, "ur", f"{ur:g}")
    out.insert(0, "arch", arch)
    out.insert(0, "dataset", dataset)
    return out.to_csv(index=False, float_format="%.4f", lineterminator="\n")


def table_latex(stats: pd.DataFrame, slug: str, caption: str) -> str:
    lines = ["% written by ltbench; needs \\usepackage{booktabs}", "\\begin{table}[htbp]", "\\centering",
             f"\\caption{{{latex_escape(caption)}}}", f"\\label{{tab:feature-space-{slug}}}",
             "\\begin{tabular}{ll" + "r" * len(TABLE_COLUMNS) + "}", "\\toprule",
             " & ".join(latex_escape(h) for h in ["Method", "Images", *TABLE_COLUMNS.values()]) + " \\\\",
             "\\midrule"]
    for key in stats.index:
        cells = [_cell(stats, key, h, "$\\pm$").replace("–", "--") for h in TABLE_COLUMNS.values()]
        lines.append(" & ".join([latex_escape(key[0]), latex_escape(key[1]), *cells]) + " \\\\")
    lines += ["\\bottomrule", "\\end{tabular}", "\\end{table}"]
    return "\n".join(lines) + "\n"


def _describe(a: Analysis) -> str:
    p = a.record["params"]
    eps = p["attack_params"].get("eps")
    return (f"{p['n_test']} test images ({p['subset_rule']}), {attack_name(p['attack'])} with eps {eps:.4g}, "
            f"{p['checkpoint']} checkpoint")


def write_feature_space(labels: dict[str, str], runs: list[Run], out: Path, palette: Palette,
                        checkpoint: str) -> FeatureSpace:
    """Tables under ``out/tables`` and figures under ``out/figures`` for every group with analyses."""
    result = FeatureSpace()
    analyses = load_analyses(runs, labels, checkpoint, result.skipped)
    if not analyses:
        result.skipped.append(f"Feature-space figures and tables: no run has {ANALYSIS_FILES[checkpoint]}; "
                              f"run `bench analyze RESULTS_DIR{' --checkpoint best' if checkpoint == 'best' else ''}`.")
        return result
    groups: dict[tuple, list[Analysis]] = {}
    for a in analyses:
        c = a.run.config
        groups.setdefault((c["dataset"], c["arch"], float(c["ur"])), []).append(a)
    with style():
        for (dataset, arch, ur), members in sorted(groups.items()):
            title, slug = group_title(dataset, arch, ur), group_slug(dataset, arch, ur)
            counts = Counter(a.setting for a in members)
            chosen = [a for a in members if a.setting == counts.most_common(1)[0][0]]
            for a in members:
                if a not in chosen:
                    result.skipped.append(f"Feature space, {title}: {a.run.run_id} was analysed on other images "
                                          "or with another attack than the other runs; left out.")
            result.runs += [a.run.run_id for a in chosen]
            _group_outputs(chosen, title, slug, dataset, arch, ur, out, palette, result)
    return result


def _group_outputs(chosen: list[Analysis], title: str, slug: str, dataset: str, arch: str, ur: float, out: Path,
                   palette: Palette, result: FeatureSpace) -> None:
    first = chosen[0]
    attack = attack_name(first.record["params"]["attack"])
    where = f"{title}; {_describe(first)}"
    run_list = ", ".join(f"`{a.run.run_id}`" for a in sorted(chosen, key=lambda a: method_sort_key(a.label)))
    stats = _group_stats(chosen)
    caption = (f"Feature-space separability on {title} ({_describe(first)}): head / mid / tail means of the "
               "per-class separation ratio (nearest other centroid distance / spread), Fisher ratio and "
               "leave-one-out nearest-class-mean accuracy, and the mean KL of tail-class feature softmaxes to "
               "other classes; mean ± sample std over seeds.")
    stem = out / "tables" / f"feature-space_{slug}"
    paths = [write_text(stem.with_suffix(".md"), table_markdown(stats)),
             write_text(stem.with_suffix(".csv"), table_csv(stats, dataset, arch, ur)),
             write_text(stem.with_suffix(".tex"), table_latex(stats, slug, caption))]
    result.tables.append((title, caption + f" Runs: {run_list}.", paths, table_markdown(stats)))

    classes, counts = first.record["classes"], first.record["class_counts"]
    tail = first.record["groups"]["tail"]
    fig = feature_plots.per_class_metrics(_tidy(chosen), classes, counts, CURVE_METRICS, palette,
                                          f"Per-class feature-space separability · {title}")
    result.figures.append(FigureFile(
        save_figure(fig, out / "figures" / f"feature-separability_{slug}"),
        f"Per-class feature-space metrics against class index, head to tail (top: clean, bottom: {attack}; "
        f"{where}): separation ratio, Fisher ratio (log axis), leave-one-out nearest-class-mean accuracy and "
        f"mean KL of the class's feature softmax to other classes'; band = sd over seeds; runs: {run_list}."))

    with_maps = [a for a in chosen if a.maps is not None]
    if not with_maps:
        result.skipped.append(f"t-SNE maps, {title}: no analysed run has its analysis-tsne.npz.")
        return
    seeds = Counter(a.run.config["seed"] for a in with_maps)
    seed = min(s for s, k in seeds.items() if k == max(seeds.values()))
    panels = {}
    for a in sorted(with_maps, key=lambda a: method_sort_key(a.label)):
        if a.run.config["seed"] == seed and a.label not in panels:
            panels[a.label] = a
    conditions = _conditions(first)
    maps = [(label, [a.maps[c] for c in conditions]) for label, a in panels.items()]
    emb = first.record["params"]["embedding"]
    fig = feature_plots.tsne_grid(maps, first.maps["labels"], classes, counts, tail,
                                  [attack_name(c) for c in conditions],
                                  f"t-SNE of penultimate features · {title} · seed {seed}")
    names = ", ".join(classes[c] for c in tail)
    result.figures.append(FigureFile(
        save_figure(fig, out / "figures" / f"tsne_{slug}_s{seed}"),
        f"t-SNE maps of the penultimate features of the same test images for each method (columns), clean (top) "
        f"and under {attack} (bottom); {where}; tail classes ({names}) large and saturated, the others small "
        f"and pale; each map embedded on its own (perplexity {emb['perplexity']:g}, PCA to {emb['pca_dims']} "
        f"dims, seed {emb['seed']}), so axes are not comparable between panels; runs: "
        + ", ".join(f"`{a.run.run_id}`" for a in panels.values()) + "."))
