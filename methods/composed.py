"""Methods built from one attack-loss part and one outer-loss part (RBL-only, TAIL-only, REAT)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from methods.base import Method, Output
from methods.rebalancing import CEAttack, RBLAttack
from methods.tail_loss import BSLTailLoss


class ComposedMethod(Method):
    """Delegates the attack loss and its state to ``attack_part``, the outer loss to ``outer_part``."""

    def __init__(
        self, params: Mapping[str, Any], class_counts: Sequence[int], device: torch.device | str = "cpu"
    ):
        super().__init__(params, class_counts, device)
        self.attack_part, self.outer_part = self.build_parts()

    def build_parts(self) -> tuple[CEAttack | RBLAttack, BSLTailLoss]:
        raise NotImplementedError

    def rbl_attack(self) -> RBLAttack:
        """The RBL attack part configured by ``rbl_mode`` and ``rbl_tau``."""
        return RBLAttack(self.class_counts, mode=self.p["rbl_mode"], tau=self.p["rbl_tau"])

    def bsl_tail_loss(self) -> BSLTailLoss:
        """BSL plus the TAIL term configured by ``variant`` and ``lambda``."""
        return BSLTailLoss(self.class_counts, tail_variant=self.p["variant"], lam=self.p["lambda"])

    def attack_loss(self, logits: Tensor, y: Tensor, clean_logits: Tensor) -> Tensor:
        return self.attack_part.loss(logits, y)

    def train_loss(self, out_adv: Output, y: Tensor, out_clean: Output | None = None) -> Tensor:
        return self.outer_part(out_adv, y)

    def end_epoch(self, ae_pred_counts: Tensor) -> None:
        self.attack_part.end_epoch(ae_pred_counts)

    def state_dict(self) -> dict[str, Any]:
        return self.attack_part.state_dict()

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.attack_part.load_state_dict(state)
