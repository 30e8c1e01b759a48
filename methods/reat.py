"""REAT (Li et al. 2023, arXiv 2307.10205): RBL-weighted CE attack, Balanced Softmax + TAIL outer loss."""

from methods.base import register
from methods.composed import ComposedMethod
from methods.rebalancing import RBL_PARAMS, RBLAttack
from methods.tail_loss import TAIL_PARAMS, BSLTailLoss


@register("reat")
class REAT(ComposedMethod):
    summary = "REAT: RBL-weighted CE attack (effective-number weights), BSL + TAIL on the AEs"
    params = TAIL_PARAMS + RBL_PARAMS

    def build_parts(self) -> tuple[RBLAttack, BSLTailLoss]:
        return self.rbl_attack(), self.bsl_tail_loss()
