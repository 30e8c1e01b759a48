"""Accuracy summaries from predicted labels: per class, head/mid/tail, worst class, balanced robustness."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor


def class_groups(class_counts: Sequence[int]) -> dict[str, list[int]]:
    """Thirds of the classes by training count: head = first C//3, tail = last C//3, mid = the rest."""
    order = sorted(range(len(class_counts)), key=lambda c: (-class_counts[c], c))
    third = len(order) // 3
    return {"head": order[:third], "mid": order[third:len(order) - third], "tail": order[len(order) - third:]}


def _mean(values: list[float]) -> float:
    present = [v for v in values if not math.isnan(v)]
    return sum(present) / len(present) if present else math.nan


def accuracy_summary(pred: Tensor, labels: Tensor, class_counts: Sequence[int]) -> dict[str, Any]:
    """Overall and per-class accuracy, head/mid/tail means, worst class and balanced robustness.

    ``balanced`` is the mean of per-class accuracies, TAET's balanced robustness (arXiv 2503.01924);
    ``confusion`` counts true class (rows) against predicted class (columns). Classes without test
    images are NaN and left out of every mean.
    """
    num_classes = len(class_counts)
    labels, pred = labels.cpu(), pred.cpu()
    confusion = torch.bincount(labels * num_classes + pred, minlength=num_classes ** 2).view(num_classes, -1)
    per_correct = confusion.diagonal().tolist()
    per_total = confusion.sum(1).tolist()
    per_acc = [c / t if t else math.nan for c, t in zip(per_correct, per_total, strict=True)]
    out: dict[str, Any] = {
        "acc": sum(per_correct) / max(sum(per_total), 1),
        "per_class_acc": per_acc,
        "per_class_correct": per_correct,
        "per_class_total": per_total,
    }
    for name, classes in class_groups(class_counts).items():
        out[name] = _mean([per_acc[c] for c in classes])
    present = [a for a in per_acc if not math.isnan(a)]
    out["worst"] = min(present) if present else math.nan
    out["balanced"] = _mean(per_acc)
    out["confusion"] = confusion.tolist()
    return out


def entropy(hist: Sequence[float]) -> float:
    """Shannon entropy (nats) of a histogram."""
    total = float(sum(hist))
    return -sum(h / total * math.log(h / total) for h in hist if h > 0) if total else 0.0


def pack_correct(correct: Tensor, labels: Tensor) -> str:
    """Per-image correctness as hex: ``np.packbits`` of the booleans, images grouped by class.

    Class 0's images come first, then class 1's, ..., each class in the evaluated order, so the labels
    follow from ``per_class_total``. eval.json stores it per attack (``correct_bits``) so that reports can
    pair methods image by image; 1,000 images take 250 characters.
    """
    order = torch.argsort(labels.cpu(), stable=True)
    return np.packbits(correct.cpu()[order].numpy().astype(bool)).tobytes().hex()


def unpack_correct(bits: str, n: int) -> np.ndarray:
    """The ``n`` booleans ``pack_correct`` wrote; ValueError when ``bits`` does not hold exactly ``n``."""
    raw = np.frombuffer(bytes.fromhex(bits), dtype=np.uint8)
    if raw.size != (n + 7) // 8:
        raise ValueError(f"correct_bits holds {raw.size * 8} bits, expected {n}")
    return np.unpackbits(raw, count=n).astype(bool)
