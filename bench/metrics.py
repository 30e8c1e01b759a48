"""Accuracy summaries from per-sample correctness: per class, head/mid/tail, worst, balanced."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor


def class_groups(class_counts: Sequence[int]) -> dict[str, list[int]]:
    """Thirds of the classes by training count: head = first C//3, tail = last C//3, mid = the rest."""
    order = sorted(range(len(class_counts)), key=lambda c: (-class_counts[c], c))
    third = len(order) // 3
    return {"head": order[:third], "mid": order[third:len(order) - third], "tail": order[len(order) - third:]}


def accuracy_summary(correct: Tensor, labels: Tensor, class_counts: Sequence[int]) -> dict:
    """Overall and per-class accuracy with head/mid/tail means, worst class and balanced robustness.

    ``balanced`` is the mean of per-class accuracies (TAET's balanced robustness, arXiv 2503.01924);
    classes without test samples are left out of the means.
    """
    num_classes = len(class_counts)
    labels = labels.cpu()
    per_correct = torch.bincount(labels, weights=correct.cpu().double(), minlength=num_classes).long().tolist()
    per_total = torch.bincount(labels, minlength=num_classes).tolist()
    per_acc = [c / t if t else math.nan for c, t in zip(per_correct, per_total, strict=True)]
    present = [a for a in per_acc if not math.isnan(a)]

    def mean_of(classes: list[int]) -> float:
        values = [per_acc[c] for c in classes if not math.isnan(per_acc[c])]
        return sum(values) / len(values) if values else math.nan

    out = {
        "acc": sum(per_correct) / max(sum(per_total), 1),
        "per_class_acc": per_acc,
        "per_class_correct": per_correct,
        "per_class_total": per_total,
    }
    out.update({name: mean_of(classes) for name, classes in class_groups(class_counts).items()})
    out["worst"] = min(present) if present else math.nan
    out["balanced"] = sum(present) / len(present) if present else math.nan
    return out


def entropy(hist: Sequence[float]) -> float:
    """Shannon entropy (nats) of a histogram."""
    total = float(sum(hist))
    return -sum(h / total * math.log(h / total) for h in hist if h > 0) if total else 0.0
