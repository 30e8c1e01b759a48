"""The model exactly as it predicts: backbone, head and the method's inference-time adjustment."""

from __future__ import annotations

from typing import Protocol

from torch import Tensor, nn


class Predictor(Protocol):
    """What the inference path needs of a method (``methods.base.Method`` is one)."""

    def predict(self, logits: Tensor) -> Tensor: ...


class InferenceModel(nn.Module):
    """``method.predict(net(x))`` as one module, so attacks differentiate what is evaluated."""

    def __init__(self, net: nn.Module, method: Predictor):
        super().__init__()
        self.net = net
        self.method = method

    def forward(self, x: Tensor) -> Tensor:
        return self.method.predict(self.net(x))
