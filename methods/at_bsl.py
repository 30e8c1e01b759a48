"""AT-BSL (Yue et al. 2024): CE-PGD from x + 0.001 N(0, I), Balanced Softmax outer loss on the AEs."""

from __future__ import annotations

from torch import Tensor

from methods.base import Method, Output, Param, register
from methods.tail_loss import balanced_softmax_loss


@register("at-bsl")
class ATBSL(Method):
    summary = "AT-BSL: CE attack from x + 0.001 N(0, I), Balanced Softmax CE(z + tau log pi) on the AEs"
    params = (Param("tau", 1.0, "logit adjustment strength: CE(z + tau * log pi, y) (the paper's code: 1)"),)
    attack_start = "normal"

    def train_loss(self, out_adv: Output, y: Tensor, out_clean: Output | None = None) -> Tensor:
        return balanced_softmax_loss(out_adv.logits, y, self.class_counts, self.p["tau"])
