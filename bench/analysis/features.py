"""Penultimate features of a test subset, clean and under attack, exactly as the evaluator attacks it.

The adversarial images come from ``bench.evaluation.suite``'s attack code with the evaluator's generator, batch
order and batch size, so with the same subset and batch size they are the images eval.json scored.
Features are ``net.forward_features(x).features`` in eval mode, fp32, without gradient; the labels the
model predicts go through the method's inference path (``method.predict``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from bench.core.progress import Progress
from bench.data.images import to_float
from bench.evaluation.attacks import eval_mode
from bench.evaluation.suite import adversarial_images, attack_generator
from bench.models.inference import InferenceModel


@dataclass(frozen=True)
class FeatureSet:
    """Features (N x D, float32) and the labels the model predicted for them."""

    features: np.ndarray
    predictions: np.ndarray


def extract(model: InferenceModel, key: str, params: dict[str, Any], x_all: Tensor, y_all: Tensor, *,
            seed: int, batch_size: int, progress: Progress) -> FeatureSet:
    """Features of every image of ``x_all`` (uint8) under attack ``key`` (``clean``: the images themselves)."""
    generator = attack_generator(key, seed, y_all.device)
    task = progress.task(f"features {key}", total=y_all.numel(), transient=True)
    features, predictions = [], []
    with eval_mode(model):
        for start in range(0, y_all.numel(), batch_size):
            x, y = to_float(x_all[start:start + batch_size]), y_all[start:start + batch_size]
            x = adversarial_images(model, key, params, x, y, generator)
            with torch.no_grad():
                out = model.net.forward_features(x)
                predictions.append(model.method.predict(out.logits).argmax(1).cpu())
            features.append(out.features.float().cpu())
            task.advance(y.numel())
    task.close()
    return FeatureSet(torch.cat(features).numpy(), torch.cat(predictions).numpy())
