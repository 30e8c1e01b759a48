"""Comparison tables: methods x attacks (overall and tail), mean ± std over seeds, one per dataset/arch/UR."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from bench.evaluation.metrics import class_groups
from bench.report import significance
from bench.report.labels import attack_name, attack_sort_key, group_slug, group_title, method_sort_key

GROUP = ["dataset", "arch", "ur", "test_profile"]
#: why a column can lack the bootstrap
UNTESTED_REASON = ("a run lacks per-image results in its eval record, or the runs were evaluated on different test "
                   "images; `bench eval` adds them")
_MISSING = "–"


@dataclass(frozen=True)
class Table:
    """One comparison table; ``stats`` is indexed by method label, accuracies in %.

    Columns: ``n_seeds`` and, per metric (``pgd20``, ``pgd20_tail``, ...), ``_mean``, ``_std`` (sample
    std, NaN for one seed) and ``_n`` (seeds with that attack).
    """

    dataset: str
    arch: str
    ur: float
    metrics: list[str]
    stats: pd.DataFrame
    test_profile: str = "balanced"
    #: per metric, every method's difference to the column's best (paired bootstrap); absent metrics untested
    differences: dict[str, dict[str, significance.Difference]] = field(default_factory=dict)
    #: attacks (display names) whose columns have no bootstrap (see ``UNTESTED_REASON``)
    untested: tuple[str, ...] = ()

    @property
    def title(self) -> str:
        title = group_title(self.dataset, self.arch, self.ur)
        return title if self.test_profile == "balanced" else f"{title} · {self.test_profile} test set"

    @property
    def slug(self) -> str:
        slug = group_slug(self.dataset, self.arch, self.ur)
        return slug if self.test_profile == "balanced" else f"{slug}_{self.test_profile}-test"

    def best(self, metric: str) -> set[str]:
        """Methods with the highest mean (as displayed, 2 decimals); none when fewer than two have one."""
        top = _top_rows(self.stats, metric)
        return set(top) if self.stats[f"{metric}_mean"].notna().sum() > 1 else set()

    def bold(self, metric: str) -> set[str]:
        """Rows marked in ``metric``'s column: those not significantly worse than the best row when the
        bootstrap ran for it, else the best means."""
        if metric not in self.differences:
            return self.best(metric)
        if len(self.differences[metric]) < 2:
            return set()
        return {label for label, d in self.differences[metric].items() if not d.significantly_worse}


def metric_name(metric: str) -> str:
    """``pgd20_tail`` -> ``PGD-20 tail``, ``pgd20_balanced`` -> ``PGD-20 balanced``."""
    attack, _, part = metric.partition("_")
    return attack_name(attack) + (f" {part}" if part else "")


def build_tables(df: pd.DataFrame) -> list[Table]:
    """Summarise the ``collect`` frame into one table per (dataset, arch, UR, test profile).

    On a long-tailed test set overall accuracy and ``balanced`` (mean per-class accuracy) differ, so
    those tables show ``balanced`` next to each overall accuracy.
    """
    tables = []
    for (dataset, arch, ur, profile), g in df.groupby(GROUP, sort=True):
        attacks = sorted(g["attack"].unique(), key=attack_sort_key)
        columns = {"": "acc", "_balanced": "balanced", "_tail": "tail"}
        if profile == "balanced":
            del columns["_balanced"]
        metrics = [f"{a}{suffix}" for a in attacks for suffix in columns]
        long = pd.concat([g.assign(metric=g["attack"] + suffix, value=g[field] * 100)
                          for suffix, field in columns.items()])
        agg = long.groupby(["method_label", "metric"])["value"].agg(["mean", "std", "count"])
        labels = sorted(g["method_label"].unique(), key=method_sort_key)
        stats = pd.DataFrame(index=pd.Index(labels, name="method"))
        stats["n_seeds"] = g.groupby("method_label")["seed"].nunique()
        for metric in metrics:
            part = agg.xs(metric, level="metric").reindex(labels)
            stats[f"{metric}_mean"], stats[f"{metric}_std"] = part["mean"], part["std"]
            stats[f"{metric}_n"] = part["count"].fillna(0).astype(int)
        differences, untested = _bootstrap(g, stats, attacks, columns)
        tables.append(Table(dataset, arch, float(ur), metrics, stats, profile, differences, untested))
    return tables


def _top_rows(stats: pd.DataFrame, metric: str) -> list[str]:
    """The rows with the highest mean as displayed (2 decimals), in table order."""
    means = stats[f"{metric}_mean"].dropna().round(2)
    return [str(label) for label in means.index[means == means.max()]]


def _best_label(stats: pd.DataFrame, metric: str) -> str | None:
    """The row with the highest mean (as displayed); the first in table order on a tie."""
    return next(iter(_top_rows(stats, metric)), None)


def _bootstrap(g: pd.DataFrame, stats: pd.DataFrame, attacks: list[str],
               columns: dict[str, str]) -> tuple[dict[str, dict[str, significance.Difference]], tuple[str, ...]]:
    """Each metric's differences to its best row, for the attacks whose runs all share per-image results.

    Returns the differences and the attacks (display names) that have none.
    """
    first = g.iloc[0]
    groups = class_groups(first["class_counts"])
    subsets = {"": None, "_tail": groups["tail"], "_balanced": list(range(len(first["class_counts"])))}
    differences: dict[str, dict[str, significance.Difference]] = {}
    reasons = []
    draws: dict[tuple[int, ...], significance.Bootstrap] = {}
    for attack in attacks:
        rows = g[g["attack"] == attack]
        totals = {tuple(t) if isinstance(t, list) else None for t in rows["per_class_total"]}
        if rows["correct"].isna().any() or len(totals) != 1 or None in totals:
            reasons.append(attack_name(attack))
            continue
        (total,) = totals
        if total not in draws:
            labels = np.repeat(np.arange(len(total)), total)
            draws[total] = significance.Bootstrap(labels, len(total))
        methods = {label: significance.Runs(tuple(runs["seed"]), np.stack(runs["correct"].tolist()))
                   for label, runs in rows.sort_values("seed").groupby("method_label", sort=False)}
        for suffix in columns:
            metric = f"{attack}{suffix}"
            best = _best_label(stats, metric)
            if best is not None:
                differences[metric] = significance.compare_to_best(draws[total], methods, subsets[suffix], best)
    return differences, tuple(reasons)


def _cell(table: Table, label: str, metric: str, pm: str) -> str:
    row = table.stats.loc[label]
    mean, std, n = row[f"{metric}_mean"], row[f"{metric}_std"], row[f"{metric}_n"]
    if pd.isna(mean):
        return _MISSING
    text = f"{mean:.2f}" + (f" {pm} {std:.2f}" if n > 1 else "")
    return text + (f" (n={n})" if n < row["n_seeds"] else "")


def pipe_table(header: list[str], rows: list[list[str]]) -> str:
    """A Markdown pipe table with padded columns: the first left-aligned, the others right-aligned."""
    widths = [max(3, *(len(r[i]) for r in [header, *rows])) for i in range(len(header))]
    rule = [":" + "-" * (widths[0] - 1)] + ["-" * (w - 1) + ":" for w in widths[1:]]

    def line(cells: list[str]) -> str:
        return "| " + " | ".join(c.ljust(w) if i == 0 else c.rjust(w)
                                 for i, (c, w) in enumerate(zip(cells, widths, strict=True))) + " |"

    return "\n".join([line(header), line(rule), *map(line, rows)]) + "\n"


def to_markdown(table: Table) -> str:
    """A pipe table; bold per column: the rows not significantly worse than the best (see ``bold_rule``)."""
    header = ["Method", "Seeds", *map(metric_name, table.metrics)]
    rows = []
    for label in table.stats.index:
        cells = []
        for metric in table.metrics:
            text = _cell(table, label, metric, "±")
            cells.append(f"**{text}**" if label in table.bold(metric) else text)
        rows.append([label.replace("|", "\\|"), str(table.stats.at[label, "n_seeds"]), *cells])
    return pipe_table(header, rows)


def bold_rule(table: Table) -> str:
    """One sentence saying what bold means in ``table`` (and which columns had no bootstrap)."""
    level = round(significance.CONFIDENCE * 100)
    if not table.differences:
        return ("**Bold**: the best mean per column (no column could be tested for significance: "
                f"{UNTESTED_REASON}).") if table.untested else "**Bold**: the best mean per column."
    text = (f"**Bold**: not significantly worse than the column's best mean: the {level}% interval of the "
            f"difference (paired bootstrap over seeds and test images, {significance.SAMPLES} replicates, same "
            "images for every method) does not lie below zero.")
    if table.untested:
        text += (f" Bold = best mean for {', '.join(table.untested)}: no paired bootstrap ({UNTESTED_REASON}).")
    return text


def _difference_cell(d: significance.Difference | None, best: bool) -> str:
    if d is None:
        return _MISSING
    if best:
        return "best"
    return f"{d.mean:+.2f} [{d.low:+.2f}, {d.high:+.2f}]".replace("-", "−")


def differences_markdown(table: Table) -> str:
    """Per cell, the difference to the column's best row in points with its 95% interval; "" without one."""
    metrics = [m for m in table.metrics if m in table.differences]
    if not metrics:
        return ""
    bests = {m: _best_label(table.stats, m) for m in metrics}
    rows = [[label.replace("|", "\\|"),
             *(_difference_cell(table.differences[m].get(label), label == bests[m]) for m in metrics)]
            for label in table.stats.index]
    return pipe_table(["Method", *map(metric_name, metrics)], rows)


def table_file(table: Table) -> str:
    """The Markdown table file: title, the table, what bold means, and the differences to the best rows."""
    parts = [f"# {table.title}\n", to_markdown(table), bold_rule(table) + "\n"]
    differences = differences_markdown(table)
    if differences:
        level = round(significance.CONFIDENCE * 100)
        parts += [f"Difference to the column's best row, accuracy points, with its {level}% bootstrap interval:\n",
                  differences]
    return "\n".join(parts)


def latex_escape(text: str) -> str:
    special = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
               "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}
    return "".join(special.get(ch, ch) for ch in text)


def to_latex(table: Table, checkpoint: str) -> str:
    """A booktabs ``table`` environment; ``\\textbf`` as in ``to_markdown`` (the caption says which rule)."""
    where = latex_escape(f"{table.dataset}, {table.arch}, UR {table.ur:g}")
    lines = [
        "% written by ltbench; needs \\usepackage{booktabs}",
        "\\begin{table}[htbp]",
        "\\centering",
        f"\\caption{{Accuracy (\\%) on {where}, {checkpoint} checkpoint: mean $\\pm$ sample std over seeds; "
        f"{_latex_bold_rule(table)}; tail = mean accuracy of the last third of the classes.}}",
        f"\\label{{tab:acc-{table.slug}}}",
        "\\begin{tabular}{l" + "r" * (1 + len(table.metrics)) + "}",
        "\\toprule",
        " & ".join(["Method", "Seeds", *(latex_escape(metric_name(m)) for m in table.metrics)]) + " \\\\",
        "\\midrule",
    ]
    for label in table.stats.index:
        cells = []
        for metric in table.metrics:
            text = _cell(table, label, metric, "$\\pm$").replace(_MISSING, "--")
            cells.append(f"\\textbf{{{text}}}" if label in table.bold(metric) else text)
        seeds = str(table.stats.at[label, "n_seeds"])
        lines.append(" & ".join([latex_escape(label), seeds, *cells]) + " \\\\")
    lines += ["\\bottomrule", "\\end{tabular}", "\\end{table}"]
    return "\n".join(lines) + "\n"


def _latex_bold_rule(table: Table) -> str:
    if not table.differences:
        return "best mean in bold"
    level = round(significance.CONFIDENCE * 100)
    return (f"bold: not significantly worse than the column's best (the {level}\\% interval of the difference, "
            "paired bootstrap over seeds and test images, does not lie below zero)")


def to_csv(table: Table) -> str:
    """Plain numbers: group, method, n_seeds, ``<metric>_mean``, ``<metric>_std``, the metrics it has the
    best mean in, and per tested metric ``<metric>_diff`` / ``_diff_low`` / ``_diff_high`` (points against
    the column's best, 95% bootstrap interval) and ``bold`` (the columns where it is not significantly worse).
    """
    columns = ["n_seeds", *(f"{m}_{s}" for m in table.metrics for s in ("mean", "std"))]
    out = table.stats[columns].reset_index()
    out.insert(0, "ur", f"{table.ur:g}")
    out.insert(0, "arch", table.arch)
    out.insert(0, "dataset", table.dataset)
    best = {m: table.best(m) for m in table.metrics}
    out["best"] = [";".join(m for m in table.metrics if label in best[m]) for label in table.stats.index]
    bold = {m: table.bold(m) for m in table.metrics}
    out["bold"] = [";".join(m for m in table.metrics if label in bold[m]) for label in table.stats.index]
    for metric, diffs in table.differences.items():
        for part in ("mean", "low", "high"):
            name = f"{metric}_diff" + ("" if part == "mean" else f"_{part}")
            out[name] = [getattr(diffs[label], part) if label in diffs else np.nan for label in table.stats.index]
    return out.to_csv(index=False, float_format="%.4f", lineterminator="\n")


def runs_csv(df: pd.DataFrame) -> str:
    """Every run and attack of the ``collect`` frame with accuracies in %, per-class ones as a JSON list."""
    out = df.drop(columns=["classes", "class_counts", "per_class_total", "correct"])
    out = out.assign(ur=df["ur"].map("{:g}".format))
    for key in ("acc", "head", "mid", "tail", "worst", "balanced"):
        out[key] = out[key] * 100
    out["per_class_acc"] = [json.dumps([round(v * 100, 4) for v in accs]) for accs in out["per_class_acc"]]
    return out.to_csv(index=False, float_format="%.4f", lineterminator="\n")
