"""RobustLT (Zhang et al., CVPR 2026): a class-wise perturbation budget with a warm-up, around any method.

With n_c the training count of class c, N the total, E the epochs and e0 the 0-based epoch (the official
code, core/methods/robustlt.py):
    r_c = sqrt(ln(n_max / n_c)),  tau = alpha / sum_c (n_c / N) r_c,  eps_c_max = eps ((1 - alpha) + tau r_c),
    s = min(e0 / (beta E), 1) (beta = 0: s = 1),  eps_c = s eps_c_max,  step_c = (eps_c / eps) step.
Each training AE is crafted with its class's eps_c and step_c (same number of steps, projection onto its own
ball at every step); the random start keeps the run's eps, as the official code does. The attack loss, the
outer loss, the head and the inference path are the base method's. On balanced data (every r_c = 0) the
budget is eps for every class.

Used as the method name ``robustlt+BASE`` (``robustlt+at-bsl``); its parameters are ``robustlt_alpha``,
``robustlt_beta`` and the base method's.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from bench.core.errors import InputError
from bench.models.awp import AWPSettings
from methods.base import Method, Output, Param, register_wrapper

PARAMS = (
    Param("robustlt_alpha", 0.3, "share of the budget moved from head to tail: head (1 - alpha) eps, mean eps "
          "(official configs: 0.3 on CIFAR-10, 0.4 on CIFAR-100 / Tiny-ImageNet)"),
    Param("robustlt_beta", 0.8, "warm-up: the budget grows linearly over the first beta * epochs (0: none; "
          "official configs: 0.8 on CIFAR-10, 0.6 on CIFAR-100 / Tiny-ImageNet)"),
)
OWN = {p.name for p in PARAMS}
#: the official configs; every other dataset takes CIFAR-10's (0.3, 0.8)
DATASET_DEFAULTS = {"cifar100": (0.4, 0.6), "tiny-imagenet": (0.4, 0.6)}


def budget_factors(class_counts: Tensor, alpha: float) -> Tensor:
    """eps_c_max / eps per class, in float64: (1 - alpha) + tau r_c, or 1 for every class on balanced data."""
    n = class_counts.detach().to("cpu", torch.float64)
    r = (n.max() / n).log().sqrt()
    weighted = (n / n.sum() * r).sum()
    if weighted == 0:
        return torch.ones_like(n)
    return (1 - alpha) + alpha / weighted * r


def warmup_scale(epoch: int, num_epochs: int, beta: float) -> float:
    """s = min(e0 / (beta E), 1) for the 0-based ``epoch``; 1 when ``beta`` is 0."""
    return min(epoch / (beta * num_epochs), 1.0) if beta > 0 else 1.0


class RobustLT(Method):
    """The class-wise budget around ``base_cls``; everything else is delegated to the wrapped method."""

    base_cls: ClassVar[type[Method]]

    def __init__(self, params: Mapping[str, Any], class_counts: Sequence[int], device: torch.device | str = "cpu"):
        super().__init__(params, class_counts, device)
        self.base = self.base_cls({k: v for k, v in self.p.items() if k not in OWN}, class_counts, device)
        self.max_factors = budget_factors(self.class_counts, self.p["robustlt_alpha"])
        self.factors = self.max_factors.to(self.device, torch.float32)

    @classmethod
    def defaults(cls, dataset: str) -> dict[str, Any]:
        alpha, beta = DATASET_DEFAULTS.get(dataset, (0.3, 0.8))
        return {"robustlt_alpha": alpha, "robustlt_beta": beta, **cls.base_cls.defaults(dataset)}

    @classmethod
    def resolve_params(cls, overrides: Mapping[str, Any], dataset: str) -> dict[str, Any]:
        known = {p.name for p in cls.params}
        for key in overrides:
            if key not in known:
                raise InputError(f"method {cls.name!r} has no parameter {key!r}; its parameters: {', '.join(known)}")
        own = cls.defaults(dataset) | {p.name: p.parse(overrides[p.name], cls.name) for p in PARAMS
                                       if p.name in overrides}
        if not 0 <= own["robustlt_alpha"] <= 1:
            raise InputError(f"{cls.name}.robustlt_alpha must lie in [0, 1], got {own['robustlt_alpha']}")
        base = cls.base_cls.resolve_params({k: v for k, v in overrides.items() if k not in OWN}, dataset)
        return {**{k: own[k] for k in OWN}, **base}

    @classmethod
    def weight_perturbation(cls, params: Mapping[str, Any]) -> AWPSettings | None:
        return cls.base_cls.weight_perturbation(params)

    def attack_budget(self, y: Tensor, eps: float, step_size: float) -> tuple[Tensor, Tensor]:
        eps, step_size = self.base.attack_budget(y, eps, step_size)
        factor = self.factors[y].view(-1, 1, 1, 1)
        return factor * eps, factor * step_size

    def begin_epoch(self, epoch: int, num_epochs: int) -> None:
        scale = warmup_scale(epoch, num_epochs, self.p["robustlt_beta"])
        self.factors = (scale * self.max_factors).to(self.device, torch.float32)
        self.base.begin_epoch(epoch, num_epochs)

    # --- everything else is the base method's ----------------------------------------------
    @property
    def needs_clean_output(self) -> bool:  # type: ignore[override]
        return self.base.needs_clean_output

    @property
    def attack_steps(self) -> int | None:  # type: ignore[override]
        return self.base.attack_steps

    def build_head(self, feat_dim: int) -> nn.Module:
        return self.base.build_head(feat_dim)

    def attack_loss(self, logits: Tensor, y: Tensor, clean_logits: Tensor) -> Tensor:
        return self.base.attack_loss(logits, y, clean_logits)

    def train_loss(self, out_adv: Output, y: Tensor, out_clean: Output | None = None) -> Tensor:
        return self.base.train_loss(out_adv, y, out_clean)

    def end_epoch(self, ae_pred_counts: Tensor) -> None:
        self.base.end_epoch(ae_pred_counts)

    def predict(self, logits: Tensor) -> Tensor:
        return self.base.predict(logits)

    def state_dict(self) -> dict[str, Any]:
        return self.base.state_dict()

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.base.load_state_dict(state)


@register_wrapper("robustlt")
def robustlt(base_cls: type[Method]) -> type[Method]:
    """RobustLT (CVPR 2026): each class's attack budget eps_c (head (1 - alpha) eps, sample-weighted mean eps),
    grown linearly over a warm-up; the base method's attack loss and outer loss"""
    return type(f"RobustLT_{base_cls.__name__}", (RobustLT,), {
        "base_cls": base_cls, "params": PARAMS + base_cls.params, "attack_start": base_cls.attack_start,
        "summary": f"RobustLT around {base_cls.name}: class-wise budget eps_c (head (1 - alpha) eps, "
                   "sample-weighted mean eps) with a linear warm-up; attack and outer loss of the base",
    })
