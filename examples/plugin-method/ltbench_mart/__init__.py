"""MART (Wang et al., ICLR 2020, "Improving adversarial robustness requires revisiting misclassified examples").

Attack: CE-PGD from x + 0.001 N(0, I). Outer loss on the adversarial logits z' and clean logits z:
BCE(z', y) + beta * mean_i[KL(p(x_i) || p(x'_i)) * (1 - p_y(x_i))], where
BCE(z', y) = CE(z', y) - log(1 - max_{k != y} p_k(x')), as in the official code (YisenWang/MART).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from methods import Method, Output, Param


class MART(Method):
    summary = "MART: CE attack from x + 0.001 N(0, I); boosted CE(adv) + beta * (1 - p_y) KL(clean || adv)"
    params = (Param("beta", 6.0, "weight of the misclassification-aware KL(clean || adv) term"),)
    attack_start = "normal"
    needs_clean_output = True

    def train_loss(self, out_adv: Output, y: Tensor, out_clean: Output | None = None) -> Tensor:
        if out_clean is None:
            raise ValueError("MART needs the clean forward pass (out_clean)")
        adv_probs = F.softmax(out_adv.logits, dim=1)
        top2 = torch.argsort(adv_probs, dim=1)[:, -2:]
        wrong = torch.where(top2[:, -1] == y, top2[:, -2], top2[:, -1])  # most likely wrong class
        boosted = F.cross_entropy(out_adv.logits, y) + F.nll_loss(torch.log(1.0001 - adv_probs + 1e-12), wrong)
        clean_probs = F.softmax(out_clean.logits, dim=1)
        true_probs = clean_probs.gather(1, y.unsqueeze(1)).squeeze(1)
        kl = F.kl_div(torch.log(adv_probs + 1e-12), clean_probs, reduction="none").sum(1)
        return boosted + self.p["beta"] * (kl * (1.0000001 - true_probs)).mean()
