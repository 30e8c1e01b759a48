"""Per-class feature-space geometry: spread, centroid distances, Fisher ratio, norms, NCM accuracy, TAIL's KL.

Every metric is computed on one set of penultimate features ``F`` (N x D) with true labels ``y``; class c has
the n_c rows ``F_c`` and centroid mu_c = mean(F_c). docs/analysis.md gives each formula. Classes without
samples are NaN; a class whose features all coincide has spread 0 and an infinite separation ratio.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy.special import log_softmax

from bench.evaluation.metrics import class_groups
from methods.tail_loss import first_tail_class

#: per-class metrics, in the order they are stored
PER_CLASS_METRICS = ("spread", "nearest_centroid_dist", "separation", "fisher", "norm", "ncm_acc",
                     "kl_other", "kl_same")


def reat_tail_classes(num_classes: int) -> list[int]:
    """REAT's tail set, TAIL's anchors by the official rule: 2 * (C // 3) + 1 .. C - 1 (7, 8, 9 for C = 10)."""
    return list(range(first_tail_class(num_classes), num_classes))


def centroids(features: np.ndarray, labels: np.ndarray, num_classes: int) -> np.ndarray:
    """C x D class means; rows of classes without samples are NaN."""
    out = np.full((num_classes, features.shape[1]), np.nan)
    for c in range(num_classes):
        rows = features[labels == c]
        if len(rows):
            out[c] = rows.mean(0)
    return out


def spread(features: np.ndarray, labels: np.ndarray, mu: np.ndarray) -> np.ndarray:
    """s_c = mean_{i in c} ||f_i - mu_c||: the mean Euclidean distance to the class centroid."""
    dist = np.linalg.norm(features - mu[labels], axis=1)
    return np.array([dist[labels == c].mean() if (labels == c).any() else np.nan for c in range(len(mu))])


def nearest_centroids(mu: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """d_c = min_{k != c} ||mu_c - mu_k|| and that k (-1 when no other class has samples)."""
    dist = np.linalg.norm(mu[:, None, :] - mu[None, :, :], axis=2)
    np.fill_diagonal(dist, np.inf)
    dist[np.isnan(dist)] = np.inf
    nearest = dist.argmin(1)
    d = dist[np.arange(len(mu)), nearest]
    missing = np.isinf(d) | np.isnan(mu).any(1)
    return np.where(missing, np.nan, d), np.where(missing, -1, nearest)


def separation(nearest_dist: np.ndarray, spread_: np.ndarray) -> np.ndarray:
    """r_c = d_c / s_c (inf when the class is one point away from every other centroid)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(spread_ == 0, np.where(nearest_dist > 0, np.inf, np.nan), nearest_dist / spread_)


def fisher(features: np.ndarray, labels: np.ndarray, mu: np.ndarray) -> np.ndarray:
    """F_c = ((mu_c - m) . w_c)^2 / (w_c' S_W w_c) along the class's own direction w_c = (mu_c - m) / ||mu_c - m||.

    m = mean of the class centroids, S_W = mean over classes of each class's covariance (1/n_c); so F_c is the
    Rayleigh quotient of LDA for class c's between-class scatter. 0 when mu_c = m; inf when S_W is 0 along w_c.
    """
    present = ~np.isnan(mu).any(1)
    m = mu[present].mean(0)
    centred = features - mu[labels]
    s_w = np.zeros((features.shape[1],) * 2)
    for c in np.flatnonzero(present):
        rows = centred[labels == c]
        s_w += rows.T @ rows / len(rows)
    s_w /= present.sum()
    out = np.full(len(mu), np.nan)
    for c in np.flatnonzero(present):
        v = mu[c] - m
        between = float(v @ v)
        if between == 0:
            out[c] = 0.0
            continue
        within = float(v @ s_w @ v) / between
        out[c] = between / within if within > 0 else np.inf
    return out


def mean_norm(features: np.ndarray, labels: np.ndarray, num_classes: int) -> np.ndarray:
    """n_c = mean_{i in c} ||f_i||."""
    norms = np.linalg.norm(features, axis=1)
    return np.array([norms[labels == c].mean() if (labels == c).any() else np.nan for c in range(num_classes)])


def ncm_predictions(features: np.ndarray, labels: np.ndarray, mu: np.ndarray) -> np.ndarray:
    """Nearest-class-mean labels, leave-one-out: argmin_k ||f_i - mu_k^(-i)|| over classes with samples.

    mu_k^(-i) = mu_k except for the sample's own class, whose centroid leaves the sample out, so that
    ||f_i - mu_{y_i}^(-i)|| = n/(n-1) ||f_i - mu_{y_i}|| (infinite for a class of one sample). Ties: lowest index.
    """
    present = ~np.isnan(mu).any(1)
    safe = np.where(present[:, None], mu, 0.0)
    dist2 = (features ** 2).sum(1)[:, None] - 2 * features @ safe.T + (safe ** 2).sum(1)[None, :]
    dist2 = np.maximum(dist2, 0.0)
    dist2[:, ~present] = np.inf
    n = np.bincount(labels, minlength=len(mu))[labels].astype(np.float64)
    rows = np.arange(len(labels))
    own = dist2[rows, labels] * (n / np.maximum(n - 1, 1)) ** 2
    dist2[rows, labels] = np.where(n > 1, own, np.inf)
    return dist2.argmin(1)


def ncm_accuracy(features: np.ndarray, labels: np.ndarray, mu: np.ndarray) -> np.ndarray:
    """a_c = share of class c's samples whose (leave-one-out) nearest centroid is their own class's."""
    hit = ncm_predictions(features, labels, mu) == labels
    return np.array([hit[labels == c].mean() if (labels == c).any() else np.nan for c in range(len(mu))])


def feature_kl(features: np.ndarray, labels: np.ndarray, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """TAIL's divergence per class: mean KL(P_b || Q_j) to other-class and to other same-class samples.

    P_b = softmax(f_b) over the D feature dimensions, KL summed over the dimensions (nats):
    kl_other_c = mean over b in c, j not in c; kl_same_c = mean over b, j in c with j != b.
    """
    log_p = log_softmax(features, axis=1)
    neg_entropy = (np.exp(log_p) * log_p).sum(1)
    other, same = np.full(num_classes, np.nan), np.full(num_classes, np.nan)
    for c in range(num_classes):
        rows = labels == c
        if not rows.any():
            continue
        kl = neg_entropy[rows, None] - np.exp(log_p[rows]) @ log_p.T
        if (~rows).any():
            other[c] = kl[:, ~rows].mean()
        n_c = int(rows.sum())
        if n_c > 1:
            block = kl[:, rows]
            same[c] = (block.sum() - np.trace(block)) / (n_c * (n_c - 1))
    return other, same


def group_means(per_class: np.ndarray, class_counts: Sequence[int]) -> dict[str, float]:
    """Head / mid / tail means (evaluator's thirds by training count); NaN classes left out."""
    out = {}
    for name, classes in class_groups(class_counts).items():
        values = per_class[classes]
        values = values[~np.isnan(values)]
        out[name] = float(values.mean()) if len(values) else float("nan")
    return out


def class_geometry(features: np.ndarray, labels: np.ndarray, class_counts: Sequence[int]) -> dict[str, Any]:
    """Every per-class metric, its head/mid/tail means, overall NCM accuracy and TAIL's tail-class KL."""
    features = np.asarray(features, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    num_classes = len(class_counts)
    mu = centroids(features, labels, num_classes)
    spread_ = spread(features, labels, mu)
    nearest_dist, nearest = nearest_centroids(mu)
    kl_other, kl_same = feature_kl(features, labels, num_classes)
    per_class = {
        "spread": spread_, "nearest_centroid_dist": nearest_dist, "separation": separation(nearest_dist, spread_),
        "fisher": fisher(features, labels, mu), "norm": mean_norm(features, labels, num_classes),
        "ncm_acc": ncm_accuracy(features, labels, mu), "kl_other": kl_other, "kl_same": kl_same,
    }
    tail = reat_tail_classes(num_classes)
    anchors = np.bincount(labels, minlength=num_classes)[tail] * ~np.isnan(kl_other[tail])
    tail_kl = float(np.nansum(kl_other[tail] * anchors) / anchors.sum()) if anchors.sum() else float("nan")
    return {
        "per_class": {k: v.tolist() for k, v in per_class.items()},
        "nearest_class": nearest.tolist(),
        "groups": {k: group_means(v, class_counts) for k, v in per_class.items()},
        "ncm_acc": float((ncm_predictions(features, labels, mu) == labels).mean()),
        "tail_kl": tail_kl,
    }
