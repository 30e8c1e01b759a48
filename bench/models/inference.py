"""The model exactly as it predicts: backbone, head and the method's inference-time adjustment."""

from __future__ import annotations

from typing import TYPE_CHECKING

from torch import Tensor, nn

if TYPE_CHECKING:
    from methods.base import Method


class InferenceModel(nn.Module):
    """``method.predict(net(x))`` as one module, so attacks differentiate what is evaluated."""

    def __init__(self, net: nn.Module, method: Method):
        super().__init__()
        self.net = net
        self.method = method

    def forward(self, x: Tensor) -> Tensor:
        return self.method.predict(self.net(x))
