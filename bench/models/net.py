"""The model every method trains: input normalisation, a backbone and a method-built head."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import Tensor, nn


class Output(NamedTuple):
    """One forward pass: penultimate features and the head's logits."""

    features: Tensor
    logits: Tensor


class Net(nn.Module):
    """Inputs in [0, 1]; optional per-channel normalisation happens inside the model."""

    def __init__(
        self,
        backbone: nn.Module,
        head: nn.Module,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
    ):
        super().__init__()
        self.backbone = backbone
        self.head = head
        channels = len(mean) if mean is not None else 1
        self.register_buffer("mean", torch.tensor(mean if mean is not None else [0.0]).view(1, channels, 1, 1))
        self.register_buffer("std", torch.tensor(std if std is not None else [1.0]).view(1, channels, 1, 1))

    def forward_features(self, x: Tensor) -> Output:
        """Penultimate features and logits."""
        features = self.backbone((x - self.mean) / self.std)
        return Output(features, self.head(features))

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_features(x).logits
