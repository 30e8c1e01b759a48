"""The model exactly as it predicts: backbone, head and the method's inference-time adjustment."""

from torch import Tensor, nn

from methods.base import Method


class InferenceModel(nn.Module):
    """``method.predict(net(x))`` as one module, so attacks differentiate what is evaluated."""

    def __init__(self, net: nn.Module, method: Method):
        super().__init__()
        self.net = net
        self.method = method

    def forward(self, x: Tensor) -> Tensor:
        return self.method.predict(self.net(x))
