"""Names shown in reports: attacks, method labels, group titles, file slugs and the method palette."""

from __future__ import annotations

import json
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import Any

import seaborn as sns

#: registry order of the methods; reports list methods in this order, unknown ones after
METHOD_ORDER = ("pgd-at", "trades", "robal", "at-bsl", "rbl", "tail", "reat", "taet", "awp")
#: one marker per method label, in palette order (12 shapes, then they repeat with other colours)
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "<", ">", "h", "p")
#: attack keys of eval.json in report order, with their display names
ATTACK_NAMES = {"clean": "Clean", "fgsm": "FGSM", "pgd20": "PGD-20", "pgd100": "PGD-100", "cw100": "CW-100",
                "aa": "AA"}
#: config fields that identify a table group, the method or the seed rather than a variant
_NOT_VARIANT = ("dataset", "arch", "ur", "method", "method_params", "preset", "seed")


def attack_name(key: str) -> str:
    """Display name of an attack key (``pgd20`` -> ``PGD-20``)."""
    return ATTACK_NAMES.get(key, key)


def attack_sort_key(key: str) -> tuple[int, str]:
    order = list(ATTACK_NAMES)
    return (order.index(key) if key in order else len(order), key)


def method_sort_key(label: str) -> tuple[int, str, str]:
    """Registry order first, then each wrapped method (``robustlt+at-bsl``) in its base's order, then
    alphabetical; a label starts with its method name."""
    method = label.split(" (")[0]
    base = method.partition("+")[2] or method
    rank = METHOD_ORDER.index(base) if base in METHOD_ORDER else len(METHOD_ORDER)
    return (rank + (len(METHOD_ORDER) + 1 if "+" in method else 0), method, label)


def group_title(dataset: str, arch: str, ur: float | None = None) -> str:
    """``cifar10 · resnet18 · UR 100``."""
    parts = [dataset, arch] + ([] if ur is None else [f"UR {ur:g}"])
    return " · ".join(parts)


def group_slug(dataset: str, arch: str, ur: float | None = None) -> str:
    """File-name part for a group: ``cifar10_resnet18_ur100``."""
    parts = [dataset, arch] + ([] if ur is None else [f"ur{ur:g}"])
    return "_".join(re.sub(r"[^A-Za-z0-9.-]+", "-", p) for p in parts)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, list | tuple):
        return "/".join(_fmt(v) for v in value)
    return str(value)


def _differing(records: list[Mapping[str, Any]]) -> list[str]:
    """Keys whose values are not the same in every record (a missing key counts as a value)."""
    keys = sorted(set().union(*records)) if records else []
    return [k for k in keys if len({json.dumps(r.get(k), sort_keys=True) for r in records}) > 1]


def _differing_within(records: list[Mapping[str, Any]], groups: list[tuple]) -> list[str]:
    """Keys that differ between records of the same group, over all groups."""
    by_group: dict[tuple, list[Mapping[str, Any]]] = defaultdict(list)
    for record, group in zip(records, groups, strict=True):
        by_group[group].append(record)
    return sorted(set().union(*(_differing(rs) for rs in by_group.values())))


def method_labels(configs: Mapping[str, Mapping[str, Any]]) -> dict[str, str]:
    """Map run id -> method label: the method name plus what tells its runs apart.

    Shown are the method parameters and the preset that differ between runs of the method on the
    same dataset (any arch / UR: a line across URs never mixes variants; defaults that depend on the
    dataset are not shown), then other config fields (epochs, eps, ...) that differ between runs of
    the method within one dataset / arch / UR / preset. E.g. ``reat (variant=paper)`` next to
    ``reat (variant=official)``; a method run one way is just its name.
    """
    by_method: dict[str, list[str]] = defaultdict(list)
    for run_id, cfg in configs.items():
        by_method[cfg["method"]].append(run_id)
    labels = {}
    for method, run_ids in by_method.items():
        cfgs = [configs[r] for r in run_ids]
        datasets = [(c["dataset"],) for c in cfgs]
        params = _differing_within([c.get("method_params") or {} for c in cfgs], datasets)
        preset = _differing_within([{"preset": c.get("preset")} for c in cfgs], datasets)
        others = _differing_within([{k: v for k, v in c.items() if k not in _NOT_VARIANT} for c in cfgs],
                                   [(c["dataset"], c["arch"], c["ur"], c.get("preset")) for c in cfgs])
        for run_id, c in zip(run_ids, cfgs, strict=True):
            parts = [f"{k}={_fmt((c.get('method_params') or {}).get(k))}" for k in params]
            parts += [f"{k}={_fmt(c.get(k))}" for k in preset + others]
            labels[run_id] = f"{method} ({', '.join(parts)})" if parts else method
    return labels


def method_palette(labels: Iterable[str]) -> dict[str, tuple[float, float, float]]:
    """One colour per method label, assigned once in registry order; every figure uses this map.

    Up to 10 labels: the colour-blind palette; up to 20: its 10 colours, then seaborn's 10 dark ones
    (``method_markers`` gives every label its own marker as well); beyond 20: evenly spaced hues.
    """
    ordered = sorted(set(labels), key=method_sort_key)
    if len(ordered) <= 10:
        colours = sns.color_palette("colorblind", len(ordered))
    elif len(ordered) <= 20:
        colours = (sns.color_palette("colorblind", 10) + sns.color_palette("dark", 10))[:len(ordered)]
    else:
        colours = sns.color_palette("husl", len(ordered))
    return dict(zip(ordered, colours, strict=True))


def method_markers(palette: Iterable[str]) -> dict[str, str]:
    """One marker per method label of ``palette``, in its order, so that marker and colour together differ."""
    return {label: MARKERS[i % len(MARKERS)] for i, label in enumerate(palette)}
