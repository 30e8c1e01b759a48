"""RoBal (Wu et al., CVPR 2021): cosine classifier, class-aware margin + prior term, TRADES regulariser,
and (variant N) an inference-time boundary adjustment."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from methods.base import Method, Output, Param, register
from methods.tail_loss import log_prior

#: repository defaults per (dataset, variant); every other dataset uses the CIFAR-10 values
_DEFAULTS: dict[tuple[str, str], dict[str, float]] = {
    ("cifar10", "N"): dict(m=0.1, s=10.0, tau_m=0.0, tau_b=1.2, beta_reg=6.0, gamma=0.03125, tau_p=0.1),
    ("cifar10", "R"): dict(m=0.1, s=10.0, tau_m=0.3, tau_b=1.5, beta_reg=6.0, gamma=0.03125, tau_p=0.1),
    ("cifar100", "N"): dict(m=0.2, s=10.0, tau_m=0.0, tau_b=0.0, beta_reg=3.0, gamma=0.03125, tau_p=1.5),
    ("cifar100", "R"): dict(m=0.3, s=10.0, tau_m=0.0, tau_b=0.0, beta_reg=6.0, gamma=0.0625, tau_p=1.5),
}


class CosPlus(nn.Module):
    """Scale-1 cosine head without bias: < f/||f|| , w_c / (||w_c|| + gamma) >."""

    def __init__(self, feat_dim: int, num_classes: int, gamma: float):
        super().__init__()
        self.gamma = gamma
        bound = 1 / math.sqrt(feat_dim)
        self.weight = nn.Parameter(torch.empty(num_classes, feat_dim).uniform_(-bound, bound))

    def forward(self, features: Tensor) -> Tensor:
        # the clamp only guards all-zero features (the reference divides by the plain norm)
        unit = features / features.norm(dim=1, keepdim=True).clamp_min(1e-12)
        w = self.weight / (self.weight.norm(dim=1, keepdim=True) + self.gamma)
        return unit @ w.T


def soft_kl(clean_logits: Tensor, adv_logits: Tensor) -> Tensor:
    """mean_b KL(softmax(clean_b) || softmax(adv_b)) with logs of p + 1e-12 (RoBal's regulariser)."""
    p = F.softmax(clean_logits, dim=1)
    q = F.softmax(adv_logits, dim=1)
    return (p * ((p + 1e-12).log() - (q + 1e-12).log())).sum(1).mean()


@register("robal")
class RoBal(Method):
    summary = "RoBal: cosine head, margin + prior CE on the AEs + TRADES KL; N: test-time prior subtraction"
    params = (
        Param(
            "variant",
            "N",
            "N: test logits test_scale*cos - tau_p*log pi; R: the training classifier",
            choices=("N", "R"),
        ),
        Param("m", 0.1, "base margin subtracted from the target-class cosine"),
        Param("s", 10.0, "cosine scale inside the training loss"),
        Param("tau_m", 0.0, "class-aware margin strength: m_c = m + tau_m * log(n_c / n_min) / s"),
        Param("tau_b", 1.2, "training prior term: tau_b * log pi_c added to every class's logit"),
        Param("beta_reg", 6.0, "weight of the TRADES KL(clean || adv) regulariser on the scale-1 cosines"),
        Param("gamma", 0.03125, "cosine-head weight-norm offset: w_c / (||w_c|| + gamma)"),
        Param("tau_p", 0.1, "test-time prior subtraction strength (variant N only)"),
        Param("test_scale", 10.0, "test-time cosine scale (variant N only)"),
    )
    attack_start = "uniform-positive"
    needs_clean_output = True

    @classmethod
    def variant_defaults(cls, dataset: str, variant: str) -> dict[str, Any]:
        """Repository defaults for ``dataset`` and ``variant``."""
        key = "cifar100" if dataset == "cifar100" else "cifar10"
        return {**super().defaults(dataset), **_DEFAULTS[key, variant], "variant": variant}

    @classmethod
    def defaults(cls, dataset: str) -> dict[str, Any]:
        return cls.variant_defaults(dataset, "N")

    @classmethod
    def resolve_params(cls, overrides: Mapping[str, Any], dataset: str) -> dict[str, Any]:
        """Like the base, but parameters not overridden take the chosen variant's defaults."""
        resolved = super().resolve_params(overrides, dataset)
        base = cls.variant_defaults(dataset, resolved["variant"])
        return {**resolved, **{k: v for k, v in base.items() if k not in overrides}}

    def __init__(
        self, params: Mapping[str, Any], class_counts: Sequence[int], device: torch.device | str = "cpu"
    ):
        super().__init__(params, class_counts, device)
        n = self.class_counts.clamp(min=1)
        self.margins = self.p["m"] + self.p["tau_m"] * (n / n.min()).log() / self.p["s"]
        self.log_prior = log_prior(self.class_counts)

    def build_head(self, feat_dim: int) -> nn.Module:
        return CosPlus(feat_dim, self.num_classes, self.p["gamma"])

    def train_loss(self, out_adv: Output, y: Tensor, out_clean: Output | None = None) -> Tensor:
        if out_clean is None:
            raise ValueError("RoBal needs the clean forward pass (out_clean)")
        cos = out_adv.logits
        margin = F.one_hot(y, self.num_classes).to(cos.dtype) * self.margins[y][:, None]
        logits = self.p["s"] * (cos - margin) + self.p["tau_b"] * self.log_prior
        return F.cross_entropy(logits, y) + self.p["beta_reg"] * soft_kl(out_clean.logits, cos)

    def predict(self, logits: Tensor) -> Tensor:
        if self.p["variant"] == "R":
            return logits
        return self.p["test_scale"] * logits - self.p["tau_p"] * self.log_prior
