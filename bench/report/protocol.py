"""What must agree for results to share a table row, a feature-space table or a bootstrap: the protocol.

Config fields already tell runs apart (``labels.method_labels``). On top of them a run's protocol holds the
precision it trained in (as recorded, so ``auto`` and the precision it resolved to pool), its evaluated test
images, and the radius and precision of its attacks. An attack's random seed that follows the run's seed (as
every suite does) is part of the protocol, not a difference: seeds are what a row averages over.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from bench.core import store


def attack_protocol(params: Mapping[str, Any], run_seed: int) -> dict[str, Any]:
    """An attack's parameters without the seed when it is the run's own."""
    return {k: v for k, v in params.items() if not (k == "seed" and v == run_seed)}


def _joined(values: set[Any]) -> Any:
    """One value, or the sorted values joined by "/" when the attacks of one run differ."""
    if len(values) == 1:
        return next(iter(values))
    return "/".join(sorted(f"{v:g}" if isinstance(v, float) else str(v) for v in values))


def run_protocol(path: Path, n_test: int, attacks: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """The run's protocol beyond its config: ``precision`` (trained), ``test_images``, ``eval_eps`` and
    ``eval_precision`` (over its attacks that have them)."""
    params = [res.get("params") or {} for res in attacks.values()]
    eps = {float(p["eps"]) for p in params if isinstance(p.get("eps"), int | float)}
    return {"precision": store.trained_precision(path), "test_images": n_test,
            "eval_eps": _joined(eps) if eps else None,
            "eval_precision": _joined({p.get("precision", "fp32") for p in params})}
