"""``bench list``: methods (with parameters), architectures, datasets, presets and the shipped grids."""

from __future__ import annotations

import re

import click
from rich.console import Console
from rich.table import Table

from bench.core import plugins
from bench.data.datasets import DATASETS
from bench.grid.spec import expand, parse_grid, shipped_grid_text, shipped_grids
from bench.models import ARCHS
from bench.training.config import PRESETS
from methods import REGISTRY, WRAPPERS, get_method

WHAT = ("methods", "archs", "datasets", "presets", "grids")


def plugin_note(kind: str, name: str) -> str:
    """`` (plugin: DIST VERSION)`` or `` (plugin: MODULE)`` for a plugin's entry, else nothing."""
    found = plugins.used_by([(kind, name)])
    if not found:
        return ""
    origin = found[0]
    source = f"{origin['distribution']} {origin['version']}" if "distribution" in origin else origin["module"]
    return f" (plugin: {source})"


def methods_table() -> Table:
    table = Table(title="methods (set parameters with --set METHOD.PARAM=VALUE)")
    for col in ("method", "parameter", "default", "choices", "help"):
        table.add_column(col)
    rows = [(name, cls.summary + plugin_note("method", name), cls.params) for name, cls in REGISTRY.items()]
    for wrapper, factory in WRAPPERS.items():  # a wrapper's own parameters; the base's follow them
        base = next(iter(REGISTRY))
        own = get_method(f"{wrapper}+{base}").params[:-len(REGISTRY[base].params) or None]
        rows.append((f"{wrapper}+METHOD", " ".join((factory.__doc__ or "").split()) + " (METHOD: any above)", own))
    for name, summary, params in rows:
        table.add_row(f"[bold]{name}[/bold]", "", "", "", summary)
        for p in params:
            choices = ", ".join(map(str, p.choices)) if p.choices else ""
            table.add_row("", p.name, repr(p.default), choices, p.help)
    return table


def archs_table() -> Table:
    table = Table(title="architectures")
    table.add_column("arch")
    table.add_column("description")
    for name, (_, description) in ARCHS.items():
        table.add_row(name, description + plugin_note("arch", name))
    return table


def datasets_table() -> Table:
    table = Table(title="datasets (long-tailed training split via --ur; balanced test split)")
    for col in ("dataset", "classes", "image", "augmentation", "description"):
        table.add_column(col)
    for name, info in DATASETS.items():
        table.add_row(name, str(info.num_classes), f"{info.channels}x{info.image_size}x{info.image_size}",
                      info.augment, info.description + plugin_note("dataset", name))
    return table


def presets_table() -> Table:
    table = Table(title="presets (every field can be overridden)")
    for col in ("preset", "epochs", "batch", "train PGD steps", "eval suite", "per-epoch test n", "eval n",
                "description"):
        table.add_column(col)
    for name, p in PRESETS.items():
        train, ev = p.fields(), p.eval_settings()
        table.add_row(name, str(train["epochs"]), str(train["batch_size"]), str(train["steps"]),
                      f"{ev.suite} ({', '.join(ev.attacks)})", str(train["epoch_eval_n"] or "all"),
                      str(ev.n or "all"), p.description)
    return table


def grid_summary(name: str, text: str) -> str:
    """The first sentence of grid file ``text``'s header comment, without its ``name:`` prefix."""
    header = []
    for line in text.splitlines():
        if not line.startswith("#") or not line.strip("# "):
            break
        header.append(line.lstrip("# "))
    paragraph = " ".join(header).removeprefix(f"{name}:").strip()
    return re.split(r"(?<=[.?])\s", paragraph, maxsplit=1)[0]


def grids_table() -> Table:
    table = Table(title="shipped grids (bench grid NAME; the file's header documents it)")
    for col in ("grid", "runs", "datasets", "URs", "methods", "what it is for"):
        table.add_column(col)
    for name in shipped_grids():
        text = shipped_grid_text(name)
        spec = parse_grid(text, name)
        table.add_row(name, str(len(expand(spec))), ", ".join(spec.datasets), ", ".join(f"{u:g}" for u in spec.urs),
                      ", ".join(spec.methods), grid_summary(name, text))
    return table


@click.command("list")
@click.argument("what", required=False, type=click.Choice(WHAT))
def command(what: str | None) -> None:
    """Show the registered methods, architectures, datasets and presets with their defaults, and the shipped
    grids."""
    plugins.load()
    console = Console(width=160)
    builders = {"methods": methods_table, "archs": archs_table, "datasets": datasets_table, "presets": presets_table,
                "grids": grids_table}
    for name in (what,) if what else WHAT:
        console.print(builders[name]())
