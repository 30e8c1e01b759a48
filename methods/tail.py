"""TAIL-only (REAT ablation): plain CE attack, Balanced Softmax + TAIL outer loss on the AEs."""

from methods.base import register
from methods.composed import ComposedMethod
from methods.rebalancing import CEAttack
from methods.tail_loss import TAIL_PARAMS, BSLTailLoss


@register("tail")
class TailOnly(ComposedMethod):
    summary = "REAT ablation without RBL: CE attack, BSL + TAIL feature-space term on the AEs"
    params = TAIL_PARAMS

    def build_parts(self) -> tuple[CEAttack, BSLTailLoss]:
        return CEAttack(), self.bsl_tail_loss()
