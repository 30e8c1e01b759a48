"""Eval-mode BatchNorm folded into the preceding convolution, for the training attack's forward/backward.

While PGD crafts the examples the net is in eval mode, where BN is a fixed per-channel affine map, so
``bn(conv(x)) = conv'(x)`` with ``w' = w * g / sqrt(v + e)`` and ``b' = beta + (b - m) * g / sqrt(v + e)``
(the same folding as ``torch.nn.utils.fusion``). The folded net computes the same function up to float
rounding and skips every BN pass of the attack. It shares every other module with the live net; ``refresh``
re-folds the current weights before each batch.
"""

from __future__ import annotations

import copy

import torch
import torch.fx as fx
from torch import Tensor, nn
from torch.nn.utils.fusion import fuse_conv_bn_weights


class FoldedNet(nn.Module):
    """A traced twin of ``net`` in which each conv -> BatchNorm2d pair is one biased conv."""

    def __init__(self, net: nn.Module, graph_module: fx.GraphModule, pairs: list[tuple[str, str]]):
        super().__init__()
        self.graph_module = graph_module
        self.pairs = pairs
        self._live = [net]  # a list, so the live net is not registered as a submodule

    def refresh(self) -> None:
        """Fold the live net's current conv weights and BN statistics into the twin's convs."""
        live = dict(self._live[0].named_modules())
        with torch.no_grad():
            for conv_name, bn_name in self.pairs:
                conv, bn = live[conv_name], live[bn_name]
                weight, bias = fuse_conv_bn_weights(conv.weight, conv.bias, bn.running_mean, bn.running_var,
                                                    bn.eps, bn.weight, bn.bias)
                folded = self.graph_module.get_submodule(conv_name)
                folded.weight.copy_(weight)
                folded.bias.copy_(bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.graph_module(x)


def _foldable(modules: dict[str, nn.Module], node: fx.Node) -> bool:
    if node.op != "call_module" or not isinstance(modules[node.target], nn.BatchNorm2d):
        return False
    prev = node.args[0]
    return (isinstance(prev, fx.Node) and prev.op == "call_module" and isinstance(modules[prev.target], nn.Conv2d)
            and len(prev.users) == 1 and modules[node.target].track_running_stats)


def fold_batchnorm(net: nn.Module) -> FoldedNet | None:
    """``net`` with eval-mode BN folded into its convs; None when it cannot be traced or has nothing to fold."""
    try:
        graph_module = fx.symbolic_trace(net)
    except Exception:  # data-dependent control flow in a backbone or head: no folding, same results
        return None
    modules = dict(graph_module.named_modules())
    pairs = []
    for node in list(graph_module.graph.nodes):
        if not _foldable(modules, node):
            continue
        conv_node = node.args[0]
        conv = modules[conv_node.target]
        folded = copy.deepcopy(conv)
        if folded.bias is None:
            folded.bias = nn.Parameter(torch.zeros(conv.out_channels, device=conv.weight.device))
        folded.requires_grad_(False)
        parent, _, leaf = conv_node.target.rpartition(".")
        setattr(graph_module.get_submodule(parent) if parent else graph_module, leaf, folded)
        node.replace_all_uses_with(conv_node)
        graph_module.graph.erase_node(node)
        pairs.append((conv_node.target, node.target))
    if not pairs:
        return None
    graph_module.graph.lint()
    graph_module.recompile()
    twin = FoldedNet(net, graph_module, pairs)
    twin.refresh()
    return twin
