"""Comparison tables: methods x attacks (overall and tail), mean ± std over seeds, one per dataset/arch/UR."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pandas as pd

from bench.report.labels import attack_name, attack_sort_key, group_slug, group_title, method_sort_key

GROUP = ["dataset", "arch", "ur", "test_profile"]
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
        means = self.stats[f"{metric}_mean"].dropna().round(2)
        return set(means.index[means == means.max()]) if len(means) > 1 else set()


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
        tables.append(Table(dataset, arch, float(ur), metrics, stats, profile))
    return tables


def _cell(table: Table, label: str, metric: str, pm: str) -> str:
    row = table.stats.loc[label]
    mean, std, n = row[f"{metric}_mean"], row[f"{metric}_std"], row[f"{metric}_n"]
    if pd.isna(mean):
        return _MISSING
    text = f"{mean:.2f}" + (f" {pm} {std:.2f}" if n > 1 else "")
    return text + (f" (n={n})" if n < row["n_seeds"] else "")


def to_markdown(table: Table) -> str:
    """A pipe table; the best mean per column in bold."""
    header = ["Method", "Seeds", *map(metric_name, table.metrics)]
    rows = []
    for label in table.stats.index:
        cells = []
        for metric in table.metrics:
            text = _cell(table, label, metric, "±")
            cells.append(f"**{text}**" if label in table.best(metric) else text)
        rows.append([label.replace("|", "\\|"), str(table.stats.at[label, "n_seeds"]), *cells])
    widths = [max(3, *(len(r[i]) for r in [header, *rows])) for i in range(len(header))]
    rule = [":" + "-" * (widths[0] - 1)] + ["-" * (w - 1) + ":" for w in widths[1:]]

    def line(cells: list[str]) -> str:
        return "| " + " | ".join(c.ljust(w) if i == 0 else c.rjust(w)
                                 for i, (c, w) in enumerate(zip(cells, widths, strict=True))) + " |"

    return "\n".join([line(header), line(rule), *map(line, rows)]) + "\n"


def _latex_escape(text: str) -> str:
    special = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
               "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}
    return "".join(special.get(ch, ch) for ch in text)


def to_latex(table: Table, checkpoint: str) -> str:
    """A booktabs ``table`` environment; the best mean per column in ``\\textbf``."""
    where = _latex_escape(f"{table.dataset}, {table.arch}, UR {table.ur:g}")
    lines = [
        "% written by ltbench; needs \\usepackage{booktabs}",
        "\\begin{table}[htbp]",
        "\\centering",
        f"\\caption{{Accuracy (\\%) on {where}, {checkpoint} checkpoint: mean $\\pm$ sample std over seeds; "
        "best mean in bold; tail = mean accuracy of the last third of the classes.}",
        f"\\label{{tab:acc-{table.slug}}}",
        "\\begin{tabular}{l" + "r" * (1 + len(table.metrics)) + "}",
        "\\toprule",
        " & ".join(["Method", "Seeds", *(_latex_escape(metric_name(m)) for m in table.metrics)]) + " \\\\",
        "\\midrule",
    ]
    for label in table.stats.index:
        cells = []
        for metric in table.metrics:
            text = _cell(table, label, metric, "$\\pm$").replace(_MISSING, "--")
            cells.append(f"\\textbf{{{text}}}" if label in table.best(metric) else text)
        seeds = str(table.stats.at[label, "n_seeds"])
        lines.append(" & ".join([_latex_escape(label), seeds, *cells]) + " \\\\")
    lines += ["\\bottomrule", "\\end{tabular}", "\\end{table}"]
    return "\n".join(lines) + "\n"


def to_csv(table: Table) -> str:
    """Plain numbers: group, method, n_seeds, ``<metric>_mean``, ``<metric>_std``, metrics it is best in."""
    columns = ["n_seeds", *(f"{m}_{s}" for m in table.metrics for s in ("mean", "std"))]
    out = table.stats[columns].reset_index()
    out.insert(0, "ur", f"{table.ur:g}")
    out.insert(0, "arch", table.arch)
    out.insert(0, "dataset", table.dataset)
    best = {m: table.best(m) for m in table.metrics}
    out["best"] = [";".join(m for m in table.metrics if label in best[m]) for label in table.stats.index]
    return out.to_csv(index=False, float_format="%.4f", lineterminator="\n")


def runs_csv(df: pd.DataFrame) -> str:
    """Every run and attack of the ``collect`` frame with accuracies in %, per-class ones as a JSON list."""
    out = df.drop(columns=["classes", "class_counts"]).assign(ur=df["ur"].map("{:g}".format))
    for key in ("acc", "head", "mid", "tail", "worst", "balanced"):
        out[key] = out[key] * 100
    out["per_class_acc"] = [json.dumps([round(v * 100, 4) for v in accs]) for accs in out["per_class_acc"]]
    return out.to_csv(index=False, float_format="%.4f", lineterminator="\n")
