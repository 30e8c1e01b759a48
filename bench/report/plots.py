"""Seaborn figure builders. Each returns a matplotlib Figure on an Agg canvas (no pyplot state).

Inputs are tidy frames with accuracies in % and a ``Method`` column; ``palette`` maps every method
label to its colour, and its order gives every label its marker (``method_markers``), so that a method looks
the same in every figure.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

import matplotlib
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from matplotlib.ticker import MaxNLocator, NullLocator

from bench.report.labels import attack_name, method_markers, method_sort_key

Palette = Mapping[str, tuple[float, float, float]]
#: at most this many class names on an axis; more classes show every k-th name
_MAX_CLASS_TICKS = 30
#: figures with one panel per method wrap into rows of at most this many panels
MAX_PANEL_COLUMNS = 4


@contextmanager
def style() -> Iterator[None]:
    """Seaborn's whitegrid look for figures built and saved inside the block."""
    rc = {**sns.axes_style("whitegrid"), **sns.plotting_context("notebook", font_scale=0.85),
          "pdf.fonttype": 42}  # TrueType in PDFs: text stays editable and searchable
    with matplotlib.rc_context(rc):
        yield


def figure(width: float, height: float, **subplots: object) -> tuple[Figure, np.ndarray]:
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig, fig.subplots(squeeze=False, **subplots)


def methods(data: pd.DataFrame, palette: Palette) -> tuple[list[str], dict]:
    order = sorted(data["Method"].unique(), key=method_sort_key)
    return order, {m: palette[m] for m in order}


def method_lines(data: pd.DataFrame, palette: Palette, points: int) -> dict:
    """Seaborn keywords for one line per method with its colour and its marker (on every point, or on about 15
    of them when a line has more than 30)."""
    order, colours = methods(data, palette)
    markers = method_markers(palette)
    style = {"markevery": math.ceil(points / 15)} if points > _MAX_CLASS_TICKS else {}
    return {"hue": "Method", "hue_order": order, "palette": colours, "style": "Method", "style_order": order,
            "markers": {m: markers[m] for m in order}, "dashes": False, "markeredgecolor": "white",
            "markersize": 6, **style}


def legend_right(ax: Axes) -> None:
    if ax.get_legend() is not None:
        sns.move_legend(ax, "upper left", bbox_to_anchor=(1.02, 1), frameon=False)


def class_ticks(ax: Axes, classes: list[str], counts: list[int], axis: str = "x") -> None:
    ticks = list(range(0, len(classes), math.ceil(len(classes) / _MAX_CLASS_TICKS)))
    names = [f"{classes[i]} ({counts[i]})" for i in ticks]
    if axis == "x":
        ax.set_xticks(ticks, names, rotation=45, ha="right", rotation_mode="anchor")
    else:
        ax.set_yticks([t + 0.5 for t in ticks], names, rotation=0)


def shade_groups(ax: Axes, n_classes: int) -> None:
    """Grey bands and labels for the head / mid / tail thirds (head = first C//3, tail = last C//3)."""
    third = n_classes // 3
    if third == 0:
        return
    spans = {"head": (0, third), "mid": (third, n_classes - third), "tail": (n_classes - third, n_classes)}
    for name, (lo, hi) in spans.items():
        if name != "mid":
            ax.axvspan(lo - 0.5, hi - 0.5, color="0.5", alpha=0.1, lw=0)
        ax.text((lo + hi - 1) / 2, 0.98, name, transform=ax.get_xaxis_transform(), ha="center", va="top",
                color="0.35", fontsize="small", fontstyle="italic")


def _epoch_ticks(ax: Axes, epochs: list[int]) -> None:
    """At most about 8 epoch labels on a heatmap's x axis: the first epoch and multiples of a round step."""
    steps = (1, 2, 5, 10, 20, 25, 50, 100)
    step = next((s for s in steps if len(epochs) / s <= 8), math.ceil(len(epochs) / 8))
    ticks = [i for i, e in enumerate(epochs) if i == 0 or e % step == 0]
    ax.set_xticks([i + 0.5 for i in ticks], [str(epochs[i]) for i in ticks], rotation=0)


def per_class(data: pd.DataFrame, classes: list[str], counts: list[int], attack: str, palette: Palette,
              title: str) -> Figure:
    """Per-class accuracy under ``attack``: one line per method (mean ± sd band over seeds).

    ``data``: one row per (run, class) with ``Method``, ``class_idx``, ``acc``.
    """
    n = len(classes)
    fig, axes = figure(min(max(6.5, 2.5 + 0.5 * n), 16.0), 4.5)
    ax = axes[0, 0]
    shade_groups(ax, n)
    sns.lineplot(data=data, x="class_idx", y="acc", errorbar="sd", ax=ax, **method_lines(data, palette, n))
    class_ticks(ax, classes, counts)
    ax.set_xlim(-0.5, n - 0.5)
    ax.set_ylim(0, min(100.0, data["acc"].max() * 1.1 + 8))
    ax.set_xlabel("class (training images), head → tail")
    ax.set_ylabel(f"{attack_name(attack)} accuracy (%)")
    ax.set_title(title)
    legend_right(ax)
    return fig


def group_bars(data: pd.DataFrame, palette: Palette, title: str) -> Figure:
    """Head / mid / tail accuracy bars per method, one panel per attack (error bars: sd over seeds).

    ``data``: one row per (run, attack, group) with ``Method``, ``attack``, ``group``, ``acc``.
    """
    attacks = list(dict.fromkeys(data["attack"]))
    ncols = min(len(attacks), 3)
    nrows = math.ceil(len(attacks) / ncols)
    fig, axes = figure(3.3 * ncols + 2.0, 3.3 * nrows, nrows=nrows, ncols=ncols, sharey=True)
    order, colours = methods(data, palette)
    for ax, attack in zip(axes.flat, attacks, strict=False):
        sns.barplot(data=data[data["attack"] == attack], x="group", y="acc", order=["head", "mid", "tail"],
                    hue="Method", hue_order=order, palette=colours, saturation=1, errorbar="sd", capsize=0.15,
                    err_kws={"linewidth": 1}, legend=False, ax=ax)
        ax.set_title(attack_name(attack))
        ax.set_xlabel("")
        ax.set_ylabel("accuracy (%)")
    for ax in axes.flat[len(attacks):]:
        ax.set_visible(False)
    handles = [Patch(color=colours[m], label=m) for m in order]
    fig.legend(handles=handles, title="Method", loc="outside right upper", frameon=False)
    fig.suptitle(title)
    return fig


def ae_distribution(panels: list[tuple[str, pd.DataFrame]], classes: list[str], counts: list[int],
                    title: str) -> Figure:
    """Heatmaps of the training AEs' predicted labels: rows classes (head on top), columns epochs; one panel
    per method, at most ``MAX_PANEL_COLUMNS`` in a row.

    ``panels``: (method label, class x epoch frame of shares in % of each epoch's AEs).
    """
    n = len(classes)
    ncols = min(len(panels), MAX_PANEL_COLUMNS)
    nrows = -(-len(panels) // ncols)
    height = min(max(3.2, 1.8 + 0.3 * n), 9.0)
    fig, axes = figure(2.4 + 3.2 * ncols, height * nrows, nrows=nrows, ncols=ncols)
    vmax = max(float(np.nanmax(frame.to_numpy())) for _, frame in panels)
    for ax in axes.flat[len(panels):]:
        ax.set_axis_off()
    for i, (label, frame) in enumerate(panels):
        ax = axes.flat[i]
        sns.heatmap(frame, vmin=0, vmax=vmax, cmap="rocket_r", cbar=False, yticklabels=False, ax=ax)
        _epoch_ticks(ax, list(frame.columns))
        if i % ncols == 0:
            class_ticks(ax, classes, counts, axis="y")
            ax.set_ylabel("predicted class (training images)")
        else:
            ax.set_ylabel("")
        ax.set_xlabel("epoch")
        ax.set_title(label)
    fig.colorbar(axes[0, 0].collections[0], ax=axes.flat[:len(panels)], fraction=0.05, aspect=30 * nrows,
                 label="share of the epoch's AEs (%)")
    fig.suptitle(title)
    return fig


def robust_vs_clean(data: pd.DataFrame, palette: Palette, attack: str, title: str) -> Figure:
    """One point per run: clean accuracy against robust accuracy; marker size by UR when several.

    ``data``: one row per run with ``Method``, ``UR``, ``clean``, ``robust``.
    """
    order, colours = methods(data, palette)
    markers = method_markers(palette)
    urs = sorted(data["UR"].unique(), key=float)
    legend_rows = len(order) + 1 + (len(urs) + 1 if len(urs) > 1 else 0)
    longest = max(len(label) for label in order)  # room for the legend beside the axes
    fig, axes = figure(max(7.0, 3.8 + 0.075 * longest), max(4.5, 0.8 + 0.25 * legend_rows))
    ax = axes[0, 0]
    sizes = {"size": "UR", "size_order": urs, "sizes": (40, 110)} if len(urs) > 1 else {"s": 70}
    sns.scatterplot(data=data, x="clean", y="robust", hue="Method", hue_order=order, palette=colours,
                    style="Method", style_order=order, markers={m: markers[m] for m in order}, ax=ax, **sizes)
    ax.set_xlabel("clean accuracy (%)")
    ax.set_ylabel(f"{attack_name(attack)} accuracy (%)")
    ax.set_title(title)
    legend_right(ax)
    return fig


def accuracy_vs_ur(data: pd.DataFrame, palette: Palette, attack: str, title: str) -> Figure:
    """Overall and tail accuracy under ``attack`` against the imbalance ratio (log axis), lines per method.

    ``data``: one row per run with ``Method``, ``ur``, ``acc``, ``tail``.
    """
    fig, axes = figure(10.5, 4.2, ncols=2, sharey=True)
    urs = sorted(data["ur"].unique())
    names = ("overall", "tail (last third of the classes)")
    for i, (ax, column, name) in enumerate(zip(axes[0], ("acc", "tail"), names, strict=True)):
        sns.lineplot(data=data, x="ur", y=column, errorbar="sd", legend=i == 1, ax=ax,
                     **method_lines(data, palette, len(urs)))
        ax.set_xscale("log")
        ax.set_xticks(urs, [f"{u:g}" for u in urs])
        ax.xaxis.set_minor_locator(NullLocator())
        ax.set_xlabel("imbalance ratio UR (log scale)")
        ax.set_ylabel(f"{attack_name(attack)} accuracy (%)")
        ax.set_title(name)
    legend_right(axes[0, 1])
    fig.suptitle(title)
    return fig


def training_curves(data: pd.DataFrame, palette: Palette, columns: dict[str, str], title: str) -> Figure:
    """Per-epoch test accuracies, one panel per column (``columns``: column -> axis label), lines per method.

    ``data``: one row per (run, epoch) with ``Method``, ``epoch`` and the columns in %.
    """
    fig, axes = figure(4.2 * len(columns) + 2.0, 4.0, ncols=len(columns))
    lines = method_lines(data, palette, data["epoch"].nunique())
    for i, (ax, (column, label)) in enumerate(zip(axes[0], columns.items(), strict=True)):
        sns.lineplot(data=data, x="epoch", y=column, errorbar="sd", legend=i == len(columns) - 1, ax=ax, **lines)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
    legend_right(axes[0, -1])
    fig.suptitle(title)
    return fig


def accuracy_vs_eps(data: pd.DataFrame, palette: Palette, attack: str, train_eps: list[float],
                    title: str) -> Figure:
    """Overall and tail accuracy under ``attack`` against the L-inf radius, lines per method (error bars: sd
    over seeds); a dotted line marks each training radius in ``train_eps``.

    ``data``: one row per (run, radius) with ``Method``, ``eps``, ``acc``, ``tail``.
    """
    fig, axes = figure(10.5, 4.2, ncols=2, sharey=True)
    radii = sorted(data["eps"].unique())
    names = ("overall", "tail (last third of the classes)")
    for i, (ax, column, name) in enumerate(zip(axes[0], ("acc", "tail"), names, strict=True)):
        sns.lineplot(data=data, x="eps", y=column, errorbar="sd", err_style="bars", legend=i == 1, ax=ax,
                     **method_lines(data, palette, len(radii)))
        for eps in train_eps:
            ax.axvline(eps, color="0.4", linestyle=":", linewidth=1)
        ax.set_xticks(radii, [f"{e:.3g}" for e in radii])
        ax.set_xlabel("attack radius eps (L-inf); dotted: training eps")
        ax.set_ylabel(f"{attack_name(attack)} accuracy (%)")
        ax.set_title(name)
    legend_right(axes[0, 1])
    fig.suptitle(title)
    return fig
