"""What must agree for results to share a table row, a feature-space table or a bootstrap: the protocol.

Config fields already tell runs apart (``labels.method_labels``). On top of them a run's protocol holds the
precision it trained in (as recorded, so ``auto`` and the precision it resolved to pool) and its evaluated
test images. The tables read each run's own evaluation protocol (its training eps, fp32; see
``bench.evaluation.protocol``), so the attacks' radius and precision agree by construction. An attack's random
seed that follows the run's seed (as every suite does) is part of the protocol, not a difference: seeds are
what a row averages over.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from bench.core import store


def attack_protocol(params: Mapping[str, Any], run_seed: int) -> dict[str, Any]:
    """An attack's parameters without the seed when it is the run's own."""
    return {k: v for k, v in params.items() if not (k == "seed" and v == run_seed)}


def run_protocol(path: Path, n_test: int) -> dict[str, Any]:
    """The run's protocol beyond its config: ``precision`` (as trained) and ``test_images``."""
    return {"precision": store.trained_precision(path), "test_images": n_test}
