"""Adversarial weight perturbation (AWP, Wu et al., NeurIPS 2020), as the official code does it
(AT_AWP/utils_awp.py, train_cifar10.py), around any method's outer loss.

Each step a proxy copy of the net, loaded from the net's state, takes one plain SGD step (lr ``lr``, no
momentum, no weight decay) ascending the method's training loss on the batch (train mode). For every state
entry with more than one dimension and "weight" in its name,
    diff = ||w|| / (||w_proxy - w|| + 1e-20) (w_proxy - w);
the net is moved to w + gamma diff, the outer loss is computed there and the optimiser steps, then
gamma diff is subtracted again, leaving w + u (u: the optimiser's update from the perturbed weights' gradient).
No state survives a step, so nothing needs checkpointing.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch
from torch import Tensor, nn

#: the official code's guard against a zero proxy step
AWP_EPS = 1e-20


@dataclass(frozen=True)
class AWPSettings:
    """gamma: relative size of the perturbation; warmup: epochs without it; lr: the proxy's SGD step."""

    gamma: float
    warmup: int = 0
    lr: float = 0.01


def weight_diff(weights: Mapping[str, Tensor], proxy: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """||w|| / (||w_p - w|| + 1e-20) (w_p - w) for every entry with ndim > 1 and "weight" in its name."""
    diff = {}
    for name, w in weights.items():
        if w.dim() > 1 and "weight" in name:
            step = proxy[name] - w
            diff[name] = w.norm() / (step.norm() + AWP_EPS) * step
    return diff


def add_into(net: nn.Module, diff: Mapping[str, Tensor], coeff: float) -> None:
    """Add ``coeff * diff`` to the parameters named in ``diff``."""
    with torch.no_grad():
        for name, param in net.named_parameters():
            if name in diff:
                param.add_(diff[name], alpha=coeff)


class WeightPerturbation:
    """The proxy, its optimiser and the settings; ``active`` follows the warm-up (see ``begin_epoch``)."""

    def __init__(self, net: nn.Module, settings: AWPSettings):
        self.settings = settings
        self.proxy = copy.deepcopy(net)
        self.optimizer = torch.optim.SGD(self.proxy.parameters(), lr=settings.lr)
        self.active = settings.warmup == 0

    def begin_epoch(self, epoch: int) -> None:
        self.active = epoch >= self.settings.warmup

    def compute(self, net: nn.Module, loss_of: Callable[[nn.Module], Tensor]) -> dict[str, Tensor]:
        """The proxy ascends ``loss_of(proxy)`` by one SGD step; returns the normalised difference."""
        self.proxy.load_state_dict(net.state_dict())
        self.proxy.train()
        loss = -loss_of(self.proxy)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return weight_diff(net.state_dict(), self.proxy.state_dict())

    def perturb(self, net: nn.Module, diff: Mapping[str, Tensor]) -> None:
        add_into(net, diff, self.settings.gamma)

    def restore(self, net: nn.Module, diff: Mapping[str, Tensor]) -> None:
        add_into(net, diff, -self.settings.gamma)
