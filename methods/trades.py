"""TRADES (Zhang et al. 2019): KL inner maximisation, CE(clean) + beta * KL(clean || adv) outer loss."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from methods.base import Method, Output, Param, register


def kl_per_sample(clean_logits: Tensor, adv_logits: Tensor) -> Tensor:
    """KL(softmax(clean) || softmax(adv)) for each sample, summed over classes."""
    return F.kl_div(
        F.log_softmax(adv_logits, dim=1),
        F.log_softmax(clean_logits, dim=1),
        reduction="none",
        log_target=True,
    ).sum(1)


@register("trades")
class TRADES(Method):
    summary = (
        "TRADES: KL attack from x + 0.001 N(0, I); CE(clean) + beta * KL(clean || adv) (Zhang et al. 2019)"
    )
    params = (Param("beta", 6.0, "weight of the KL(clean || adv) robustness regulariser"),)
    attack_start = "normal"
    needs_clean_output = True

    def attack_loss(self, logits: Tensor, y: Tensor, clean_logits: Tensor) -> Tensor:
        return kl_per_sample(clean_logits, logits)

    def train_loss(self, out_adv: Output, y: Tensor, out_clean: Output | None = None) -> Tensor:
        if out_clean is None:
            raise ValueError("TRADES needs the clean forward pass (out_clean)")
        natural = F.cross_entropy(out_clean.logits, y)
        return natural + self.p["beta"] * kl_per_sample(out_clean.logits, out_adv.logits).mean()
