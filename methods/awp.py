"""AT-AWP (Wu et al., NeurIPS 2020): PGD-AT with adversarial weight perturbation (``bench.models.awp``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bench.core.errors import InputError
from bench.models.awp import AWPSettings
from methods.base import Method, Param, register


@register("awp")
class AWP(Method):
    summary = ("AT-AWP: CE attack; the weights are perturbed by gamma ||w|| along a one-step SGD ascent of the "
               "CE on the AEs (proxy copy), the CE update is taken there and the perturbation removed")
    params = (
        Param("gamma", 0.01, "perturbation size relative to each weight's norm (official train_cifar10.py: 0.01)"),
        Param("warmup", 0, "epochs trained without the weight perturbation (official default: 0)"),
        Param("proxy_lr", 0.01, "learning rate of the proxy's momentum-free SGD ascent step (official: 0.01)"),
    )

    @classmethod
    def resolve_params(cls, overrides: Mapping[str, Any], dataset: str) -> dict[str, Any]:
        resolved = super().resolve_params(overrides, dataset)
        for name in ("gamma", "warmup", "proxy_lr"):
            if resolved[name] < 0 or (name == "proxy_lr" and resolved[name] == 0):
                raise InputError(f"awp.{name} must be {'positive' if name == 'proxy_lr' else '>= 0'}, "
                                 f"got {resolved[name]}")
        return resolved

    @classmethod
    def weight_perturbation(cls, params: Mapping[str, Any]) -> AWPSettings:
        return AWPSettings(params["gamma"], params["warmup"], params["proxy_lr"])
