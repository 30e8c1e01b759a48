"""The AutoAttack adapter: pyautoattack's standard evaluation of one batch, and its reliability-check warnings."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor

from bench.models.inference import InferenceModel

#: AutoAttack "standard" attacks 9 target classes; a C-class model has only C - 1
AA_MAX_TARGETS = 9
#: APGD-T's targeted DLR loss reads the fourth-largest logit
AA_MIN_CLASSES = 4


def autoattack_predictions(model: InferenceModel, x: Tensor, y: Tensor, params: dict[str, Any]) -> Tensor:
    """Labels predicted on AutoAttack's examples: the clean prediction where it is already wrong."""
    from pyautoattack import AutoAttack  # loads only when AutoAttack runs

    adversary = AutoAttack(model, eps=params["eps"], norm=params["norm"], version=params["version"],
                           seed=params["seed"], device=x.device)
    adversary.apgd_targeted.n_target_classes = params["n_target_classes"]
    adversary.fab.n_target_classes = params["n_target_classes"]
    # AutoAttack reseeds the global generators; keep them as they were for whatever runs next
    with torch.random.fork_rng(devices=[x.device] if x.device.type == "cuda" else []):
        _, y_adv = adversary.run_standard_evaluation(x, y, batch_size=y.numel())
    return y_adv


@contextmanager
def autoattack_checks() -> Iterator[list[str]]:
    """Collect the warnings of AutoAttack's own reliability checks (e.g. Square lowering the robust accuracy
    that the gradient attacks left, a sign of gradient masking), which pyautoattack logs as ``auto-attack``."""
    messages: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            messages.append(record.getMessage())

    logger, handler = logging.getLogger("auto-attack"), Collect(logging.WARNING)
    logger.addHandler(handler)
    try:
        yield messages
    finally:
        logger.removeHandler(handler)
