"""Architecture registry: each entry builds a backbone and reports its feature size.

``net`` joins a backbone and a method's head (``Output``: features and logits); ``inference`` is the model
exactly as it predicts, with the method's inference-time adjustment.

May import: bench.core.
"""

from __future__ import annotations

import reprlib
from collections.abc import Callable, Sequence

from torch import nn

from bench.core import plugins
from bench.core.errors import InputError, unknown_name
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


def register_arch(name: str, factory: Callable[[int], tuple[nn.Module, int]], description: str = "") -> None:
    """Add an architecture (from a plugin): ``factory(in_channels)`` returns ``(backbone, feature_size)``."""
    if not callable(factory):
        raise InputError(f"arch {name!r} must be a factory function, got {reprlib.repr(factory)}")
    plugins.taken("arch", name)
    summary = description or (factory.__doc__ or "").strip().split("\n")[0] or "(plugin)"
    ARCHS[name] = (factory, summary)
    plugins.registered("arch", name)


plugins.add_registry("arch", plugins.Registry(names=lambda: ARCHS, add=register_arch,
                                              holds=lambda name, obj: ARCHS.get(name, (None,))[0] is obj))


def check_arch(name: str) -> None:
    plugins.load("arch")
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


__all__ = ["ARCHS", "Net", "Output", "build_model", "check_arch", "register_arch"]
