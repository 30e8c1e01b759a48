"""TAET (Wang et al., CVPR 2025, arXiv 2503.01924): two-stage adversarial equalisation training.

Stage 1 (epochs e < round(ce_fraction * epochs)): plain CE on the clean images, no attack.
Stage 2: CE-PGD from x + 0.001 N(0, I), then the hierarchical adversarial robust loss HARL on the AEs.
With l_i = CE(z(x'_i), y_i) and m_c samples of class c in the batch,
    L_c = sum_{i: y_i = c} l_i / (m_c + 1e-10)   (0 for a class absent from the batch),
    Lbar = mean_c L_c over all C classes,
    HARL = alpha * Lbar + beta * mean_c (L_c - Lbar)^2 + gamma * sum_c (L_c / (sum_j L_j + 1e-10))^2,
the balanced CE (BCL), the class-loss variance (HDL) and the class-loss share concentration (RCEL) of the
official notebooks. In stage 2 a train-mode forward of the clean images (output unused) moves BatchNorm's
running statistics toward clean statistics, as the official code does (``clean_bn_pass``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from bench.core.errors import InputError
from methods.base import Method, Output, Param, register

#: the official code's guards against empty classes and a zero total loss
HARL_EPS = 1e-10


def class_mean_losses(losses: Tensor, y: Tensor, num_classes: int) -> Tensor:
    """L_c = sum of class c's per-sample losses / (m_c + 1e-10), 0 for absent classes."""
    one_hot = F.one_hot(y, num_classes).to(losses.dtype)
    return (one_hot.T @ losses) / (one_hot.sum(0) + HARL_EPS)


def harl_terms(losses: Tensor, y: Tensor, num_classes: int) -> dict[str, Tensor]:
    """BCL, HDL and RCEL of per-sample losses ``losses`` with labels ``y``."""
    class_loss = class_mean_losses(losses, y, num_classes)
    mean = class_loss.mean()
    share = class_loss / (class_loss.sum() + HARL_EPS)
    return {"bcl": mean, "hdl": ((class_loss - mean) ** 2).mean(), "rcel": (share ** 2).sum()}


def harl_loss(
    logits: Tensor, y: Tensor, alpha: float = 0.1, beta: float = 0.1, gamma: float = 0.1
) -> Tensor:
    """HARL = alpha BCL + beta HDL + gamma RCEL on per-sample CE."""
    terms = harl_terms(F.cross_entropy(logits, y, reduction="none"), y, logits.shape[1])
    return alpha * terms["bcl"] + beta * terms["hdl"] + gamma * terms["rcel"]


def stage_switch_epoch(ce_fraction: float, epochs: int) -> int:
    """First epoch (0-based) of stage 2: round(ce_fraction * epochs), Python rounding as in the code."""
    return round(ce_fraction * epochs)


@register("taet")
class TAET(Method):
    summary = ("TAET: clean CE for the first ce_fraction of the epochs, then CE-PGD from x + 0.001 N(0, I) "
               "and HARL (balanced CE + class-loss variance + share terms) on the AEs")
    params = (
        Param("ce_fraction", 0.4, "fraction of the epochs trained with plain CE on clean images, no attack "
              "(stage 1 = epochs < round(ce_fraction * epochs); the code: 0.4)"),
        Param("alpha", 0.1, "weight of BCL, the mean over all classes of the per-class mean AE loss"),
        Param("beta", 0.1, "weight of HDL, the variance of the per-class mean AE losses"),
        Param("gamma", 0.1, "weight of RCEL, the sum of squared shares of the per-class mean AE losses"),
        Param("clean_bn_pass", True, "stage 2: also run a train-mode forward of the clean images (output "
              "unused) so BatchNorm statistics follow clean images, as the official code does"),
    )
    attack_start = "normal"

    def __init__(
        self, params: Mapping[str, Any], class_counts: Sequence[int], device: torch.device | str = "cpu"
    ):
        super().__init__(params, class_counts, device)
        self.adversarial_stage = True  # until begin_epoch says otherwise
        self._set_stage(adversarial=True)

    @classmethod
    def resolve_params(cls, overrides: Mapping[str, Any], dataset: str) -> dict[str, Any]:
        resolved = super().resolve_params(overrides, dataset)
        if not 0 <= resolved["ce_fraction"] <= 1:
            raise InputError(f"taet.ce_fraction must lie in [0, 1], got {resolved['ce_fraction']}")
        return resolved

    def _set_stage(self, adversarial: bool) -> None:
        self.adversarial_stage = adversarial
        self.attack_steps = None if adversarial else 0
        self.needs_clean_output = adversarial and self.p["clean_bn_pass"]

    def begin_epoch(self, epoch: int, num_epochs: int) -> None:
        self._set_stage(epoch >= stage_switch_epoch(self.p["ce_fraction"], num_epochs))

    def train_loss(self, out_adv: Output, y: Tensor, out_clean: Output | None = None) -> Tensor:
        if not self.adversarial_stage:  # stage 1: out_adv is the train-mode forward of the clean images
            return F.cross_entropy(out_adv.logits, y)
        return harl_loss(out_adv.logits, y, self.p["alpha"], self.p["beta"], self.p["gamma"])
