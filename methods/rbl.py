"""RBL-only (REAT ablation): RBL-weighted CE attack, Balanced Softmax outer loss on the AEs."""

from methods.base import register
from methods.composed import ComposedMethod
from methods.rebalancing import RBL_PARAMS, RBLAttack
from methods.tail_loss import BSLTailLoss


@register("rbl")
class RBLOnly(ComposedMethod):
    summary = "REAT ablation without TAIL: RBL-weighted CE attack (last epoch's AE prediction counts), BSL"
    params = RBL_PARAMS

    def build_parts(self) -> tuple[RBLAttack, BSLTailLoss]:
        return self.rbl_attack(), BSLTailLoss(self.class_counts)
