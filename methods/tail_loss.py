"""Outer-loss part for the REAT family: Balanced Softmax (BSL), optionally plus the TAIL feature term.

TAIL (REAT Sec. 4): for tail-class anchors b (class indices 2 * (C // 3) + 1 .. C - 1), P_b = softmax of the
anchor's penultimate features over the D feature dims (detached) and Q_j = softmax of each batch member's
features; K[b, j] = KL(P_b || Q_j) summed over the D dims. Class weights u_c = sqrt(N / n_c), pair weights
W_bj = u_{y_b} + u_{y_j}. Both variants are vectorised over the batch.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from methods.base import Output, Param

TAIL_PARAMS = (
    Param(
        "variant",
        "official",
        "official: TAIL as coded (scalar-reduced KL); paper: per-pair KL, tail pushed from other classes",
        choices=("official", "paper"),
    ),
    Param("lambda", 1.0, "coefficient of the TAIL term (the official code uses 1)"),
)


def log_prior(class_counts: Tensor) -> Tensor:
    """log pi_c = log(n_c / N), counts <= 0 clamped to 1."""
    n = class_counts.to(torch.float32).clamp(min=1)
    return n.log() - n.sum().log()


def balanced_softmax_loss(logits: Tensor, y: Tensor, class_counts: Tensor, tau: float = 1.0) -> Tensor:
    """Balanced Softmax / logit adjustment: mean_b CE(z_b + tau * log pi, y_b)."""
    return F.cross_entropy(logits + tau * log_prior(class_counts), y)


def first_tail_class(num_classes: int) -> int:
    """The official code's first tail class index, 2 * (C // 3) + 1 (see ``tail_mask``)."""
    return 2 * (num_classes // 3) + 1


def tail_mask(num_classes: int) -> Tensor:
    """Boolean mask of the tail classes by the official rule, indices 2 * (C // 3) + 1 .. C - 1.

    That is the last C // 3 classes when C mod 3 = 1 (7-9 for C = 10, 67-99 for C = 100), but 67 classes
    (133-199) for Tiny-ImageNet's 200; the evaluator's head / mid / tail thirds are a separate grouping.
    """
    return torch.arange(num_classes) >= first_tail_class(num_classes)


def _pair_terms(features: Tensor, y: Tensor, class_counts: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """B x B matrices K[b, j] = KL(P_b || Q_j), W[b, j] and same-class mask, and the tail-anchor row mask.

    Every row is computed and non-anchor rows are masked out afterwards: no data-dependent branch, no sync.
    """
    log_q = F.log_softmax(features, dim=1)
    log_p = log_q.detach()
    p = log_p.exp()
    kl = (p * log_p).sum(1, keepdim=True) - p @ log_q.T
    n = class_counts.to(features.dtype)
    u = (n.sum() / n).sqrt()
    weights = u[y][:, None] + u[y][None, :]
    same = y[:, None] == y[None, :]
    num_classes = len(class_counts)
    anchors = y >= first_tail_class(num_classes)  # tail_mask(num_classes)[y] without a host-to-device copy
    return kl, weights, same, anchors


def _anchor_mean(per_anchor: Tensor, anchors: Tensor) -> Tensor:
    """Mean of ``per_anchor`` over the tail anchors; 0 when the batch has none."""
    mask = anchors.to(per_anchor.dtype)
    return (per_anchor * mask).sum() / mask.sum().clamp(min=1)


def tail_official(features: Tensor, y: Tensor, class_counts: Tensor) -> Tensor:
    """TAIL exactly as the official code computes it (Sec. 4.1).

    Each anchor's KL is first reduced to one scalar (mean over batch x feature dims), then multiplied by
    (1/B) sum_j s_bj W_bj with s = -1 for same-class pairs and +1 otherwise; averaged over the M anchors.
    """
    kl, weights, same, anchors = _pair_terms(features, y, class_counts)
    batch, dims = features.shape
    kbar = kl.sum(1) / (batch * dims)
    sign = 1 - 2 * same.to(features.dtype)
    omega = (sign * weights).sum(1) / batch
    return _anchor_mean(kbar * omega, anchors)


def tail_paper(features: Tensor, y: Tensor, class_counts: Tensor) -> Tensor:
    """TAIL as the paper states its intent (Sec. 4.2): per-pair KL summed over feature dims.

    (1/M) sum_b (1/B) sum_j W_bj (1[y_j = y_b] - 1[y_j != y_b]) KL(P_b || Q_j): minimising it pulls same-class
    pairs together and pushes tail anchors away from other classes (unbounded; the core stops on a non-finite
    loss).
    """
    kl, weights, same, anchors = _pair_terms(features, y, class_counts)
    sign = 2 * same.to(features.dtype) - 1
    return _anchor_mean((sign * weights * kl).mean(1), anchors)


TAIL_VARIANTS = {"official": tail_official, "paper": tail_paper}


class BSLTailLoss:
    """Outer loss on the AEs' forward: BSL(z_adv) [+ lambda * TAIL(f_adv)]."""

    def __init__(self, class_counts: Tensor, tail_variant: str | None = None, lam: float = 1.0):
        self.class_counts = class_counts
        self.tail = TAIL_VARIANTS[tail_variant] if tail_variant is not None else None
        self.lam = lam

    def __call__(self, out: Output, y: Tensor) -> Tensor:
        loss = balanced_softmax_loss(out.logits, y, self.class_counts)
        if self.tail is not None:
            loss = loss + self.lam * self.tail(out.features, y, self.class_counts)
        return loss
