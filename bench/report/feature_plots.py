"""Figures of the feature-space analysis: t-SNE maps per method and per-class metrics against class index."""

from __future__ import annotations

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from bench.report.plots import MAX_PANEL_COLUMNS, Palette, class_ticks, figure, legend_right, method_lines, shade_groups

#: classes above this count get no legend entries in t-SNE maps (tail colours, others grey)
_MAX_LEGEND_CLASSES = 20


def _class_colours(num_classes: int, tail: list[int]) -> dict[int, tuple]:
    """Saturated colours for the tail classes; pale ones (grey beyond 20 classes) for the others."""
    others = [c for c in range(num_classes) if c not in tail]
    strong = sns.color_palette("bright" if len(tail) <= 10 else "husl", len(tail))
    pastel = sns.color_palette("pastel", 10)  # hues after the tail's, so no pale class shares a tail hue
    pale = ([pastel[(len(tail) + i) % 10] for i in range(len(others))] if num_classes <= _MAX_LEGEND_CLASSES
            else [(0.75, 0.75, 0.75)] * len(others))
    return {**dict(zip(tail, strong, strict=True)), **dict(zip(others, pale, strict=True))}


def tsne_grid(maps: list[tuple[str, list[np.ndarray]]], labels: np.ndarray, classes: list[str],
              counts: list[int], tail: list[int], conditions: list[str], title: str) -> Figure:
    """One column per method (at most ``MAX_PANEL_COLUMNS``, then the next block of rows), one row per condition
    within a block; tail classes drawn large, saturated and on top.

    ``maps``: (method label, one N x 2 array per condition), all on the same test images ``labels``.
    """
    ncols = min(len(maps), MAX_PANEL_COLUMNS)
    blocks = -(-len(maps) // ncols)
    fig, axes = figure(0.6 + 3.1 * ncols, 0.5 + 3.0 * len(conditions) * blocks, nrows=len(conditions) * blocks,
                        ncols=ncols)
    for ax in axes.flat:
        ax.set_axis_off()
    colours = _class_colours(len(classes), tail)
    order = [c for c in range(len(classes)) if c not in tail] + list(tail)
    for i, (label, points) in enumerate(maps):
        block, col = divmod(i, ncols)
        for cond, xy in enumerate(points):
            row = block * len(conditions) + cond
            ax = axes[row, col]
            ax.set_axis_on()
            for c in order:
                sel = labels == c
                big = c in tail
                ax.scatter(xy[sel, 0], xy[sel, 1], s=9 if big else 3, color=colours[c], alpha=0.95 if big else 0.5,
                           edgecolors="black" if big else "none", linewidths=0.25, zorder=3 if big else 1,
                           rasterized=True)
            ax.set_xticks([])
            ax.set_yticks([])
            ax.grid(False)
            if cond == 0:
                ax.set_title(label)
            if col == 0:
                ax.set_ylabel(conditions[cond])
    if len(classes) <= _MAX_LEGEND_CLASSES:
        handles = [Line2D([], [], marker="o", ls="", color=colours[c], markeredgecolor="black" if c in tail else "none",
                          markersize=6 if c in tail else 4,
                          label=f"{classes[c]} ({counts[c]})" + (" · tail" if c in tail else ""))
                   for c in range(len(classes))]
        fig.legend(handles=handles, title="class (training images)", loc="outside right center", frameon=False)
    fig.suptitle(title)
    return fig


def per_class_metrics(data: pd.DataFrame, classes: list[str], counts: list[int], metrics: dict[str, str],
                      palette: Palette, title: str) -> Figure:
    """Rows: conditions (clean, attack); columns: metrics; one line per method (band: sd over seeds).

    ``data``: one row per (run, condition, metric, class) with ``Method``, ``condition``, ``metric``,
    ``class_idx``, ``value``.
    """
    conditions = list(dict.fromkeys(data["condition"]))
    n = len(classes)
    fig, axes = figure(1.5 + 3.6 * len(metrics), 0.6 + 3.2 * len(conditions), nrows=len(conditions),
                        ncols=len(metrics), sharex=True)
    for row, cond in enumerate(conditions):
        for col, (metric, axis_label) in enumerate(metrics.items()):
            ax = axes[row, col]
            shade_groups(ax, n)
            part = data[(data["condition"] == cond) & (data["metric"] == metric)]
            sns.lineplot(data=part, x="class_idx", y="value", errorbar="sd",
                         legend=row == 0 and col == len(metrics) - 1, ax=ax, **method_lines(data, palette, n))
            if metric == "fisher" and (part["value"] > 0).any():
                ax.set_yscale("log")
            ax.set_xlim(-0.5, n - 0.5)
            ax.set_ylabel(axis_label)
            ax.set_xlabel("class (training images), head → tail" if row == len(conditions) - 1 else "")
            ax.set_title(f"{cond}")
            if row == len(conditions) - 1:
                class_ticks(ax, classes, counts)
    legend_right(axes[0, -1])
    fig.suptitle(title)
    return fig
