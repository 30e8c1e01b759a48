"""Attack-loss parts for the REAT family: plain CE, and RBL (effective-number re-balancing, REAT Sec. 4.1).

A part answers ``loss(logits, y)`` (per-sample, maximised by PGD), ``end_epoch(hist)`` and carries its own
checkpoint state. Methods compose one attack part with one outer-loss part (see ``methods.tail_loss``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from methods.base import Param

RBL_PARAMS = (
    Param(
        "rbl_mode",
        "official",
        "official: class-weighted CE (a no-op for sign-PGD, finding F1); "
        "logit: ltbench extension, CE(z + rbl_tau*log w, y)",
        choices=("official", "logit"),
    ),
    Param("rbl_tau", 1.0, "strength of the class-wise logit offset rbl_tau*log(w_c) (rbl_mode=logit only)"),
)


def effective_number_weights(class_counts: Tensor, ae_counts: Tensor) -> Tensor:
    """RBL class weights w_c = C * v_c / sum_k v_k, v_c = 1 / (E_c + 1e-5), in float32.

    E_c = (1 - beta_c^{a_c}) / (1 - beta_c) with beta_c = (n_c - 1) / n_c is the effective number of the a_c
    adversarial examples predicted as class c; a class with a_c = 0 gets v_c = 1e5 and dominates.
    """
    n = class_counts.to(torch.float32)
    a = ae_counts.to(torch.float32)
    beta = (n - 1) / n
    effective = (1 - beta.pow(a)) / (1 - beta)
    v = 1 / (effective + 1e-5)
    return len(v) * v / v.sum()


class CEAttack:
    """Plain per-sample cross-entropy; no state."""

    def loss(self, logits: Tensor, y: Tensor) -> Tensor:
        return F.cross_entropy(logits, y, reduction="none")

    def end_epoch(self, ae_pred_counts: Tensor) -> None:
        """Nothing to update."""

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if state:
            raise ValueError(f"the CE attack has no state but the checkpoint holds {sorted(state)}")


class RBLAttack:
    """RBL: CE re-weighted by the effective number of last epoch's AEs per predicted class.

    State: a_c, the number of the previous epoch's training AEs predicted as class c (initially n_c).

    ``mode="official"`` (REAT code): per-sample w_{y_b} CE_b / sum_b w_{y_b}, so the batch sum is the
    class-weighted mean CE. A positive per-sample factor cannot change the sign of that sample's input
    gradient, so with eval-mode BN sign-PGD produces exactly the plain-CE adversarial examples (finding F1).

    ``mode="logit"`` (ltbench extension, not in the paper or the code): CE(z + tau * log w, y) per sample,
    so the weights act inside the softmax and change the perturbation direction. Sign: a class the model
    under-predicts has a small a_c, hence a small E_c and a large w_c. The input gradient of CE(z + o, y) is
    sum_{k != y} p_k (grad z_k - grad z_y) with p = softmax(z + o), i.e. p_k proportional to w_k^tau exp(z_k):
    maximising it raises each wrong class's logit in proportion to its *adjusted* probability. ADDING
    tau * log w_c therefore aims the attack at the under-predicted classes, the AEs drift toward them and the
    histogram of the AEs' predicted labels flattens (higher entropy); subtracting would aim it at the
    over-predicted classes and sharpen the histogram. Caveat: a class with a_c = 0 gets v_c = 1e5, so its
    offset exceeds the others' by about log(1e5 / E) nats and the attack becomes nearly targeted at it.
    """

    def __init__(self, class_counts: Tensor, mode: str = "official", tau: float = 1.0):
        self.class_counts = class_counts
        self.mode = mode
        self.tau = tau
        self.ae_counts = class_counts.round().to(torch.int64)
        self._update_weights()

    def _update_weights(self) -> None:
        self.weights = effective_number_weights(self.class_counts.cpu(), self.ae_counts.cpu()).to(
            self.class_counts.device
        )
        self.offset = self.tau * self.weights.log()

    def loss(self, logits: Tensor, y: Tensor) -> Tensor:
        if self.mode == "logit":
            return F.cross_entropy(logits + self.offset, y, reduction="none")
        w = self.weights[y]
        return w * F.cross_entropy(logits, y, reduction="none") / w.sum()

    def end_epoch(self, ae_pred_counts: Tensor) -> None:
        """The finished epoch's predicted-label histogram replaces the counts (both modes)."""
        if ae_pred_counts.shape != self.ae_counts.shape:
            raise ValueError(
                f"expected AE counts of shape {tuple(self.ae_counts.shape)}, got {ae_pred_counts.shape}"
            )
        counts = ae_pred_counts.detach().to(device=self.class_counts.device, dtype=torch.int64)
        self.ae_counts = counts.clone()
        self._update_weights()

    def state_dict(self) -> dict[str, Any]:
        return {"ae_counts": self.ae_counts.cpu().clone()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if set(state) != {"ae_counts"}:
            raise ValueError(f"RBL state must hold exactly 'ae_counts', got {sorted(state)}")
        self.end_epoch(torch.as_tensor(state["ae_counts"]))
