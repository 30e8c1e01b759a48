"""Architecture registry: each entry builds a backbone and reports its feature size.

``net`` joins a backbone and a method's head (``Output``: features and logits); ``inference`` is the model
exactly as it predicts, with the method's inference-time adjustment.

May import: bench.core.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from torch import nn

from bench.core.errors import unknown_name
from bench.models.cnn import cnn_small
from bench.models.net import Net, Output
from bench.models.resnet import preact_resnet18, resnet18
from bench.models.wrn import wrn_28_10, wrn_34_10

ARCHS: dict[str, tuple[Callable[[int], tuple[nn.Module, int]], str]] = {
    "cnn-small": (cnn_small, "3 stride-2 conv blocks (32-64-128), 128-d features; fast on CPU"),
    "resnet18": (resnet18, "CIFAR ResNet-18 (3x3 stem, no max-pool), 512-d features"),
    "preact-resnet18": (preact_resnet18, "PreAct ResNet-18, 512-d features"),
    "wrn-28-10": (wrn_28_10, "WideResNet-28-10, dropout 0, 640-d features"),
    "wrn-34-10": (wrn_34_10, "WideResNet-34-10, dropout 0, 640-d features"),
}


def check_arch(name: str) -> None:
    if name not in ARCHS:
        raise unknown_name("architecture", name, list(ARCHS))


def build_model(
    arch: str,
    in_channels: int,
    make_head: Callable[[int], nn.Module],
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
) -> Net:
    """Backbone ``arch`` with the head that ``make_head(feat_dim)`` builds (the method's)."""
    check_arch(arch)
    backbone, feat_dim = ARCHS[arch][0](in_channels)
    return Net(backbone, make_head(feat_dim), mean, std)


__all__ = ["ARCHS", "Net", "Output", "build_model", "check_arch"]
