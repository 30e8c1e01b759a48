"""Training augmentation on the device (crop and flip as one gather, optional RandAugment / AutoAugment) and
the shuffled float batches of an epoch."""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import Tensor

from bench.data.images import to_float
from bench.data.longtail import LongTailData
from bench.data.policy_augment import policy_augment

#: training augmentations: RandAugment (ra) / AutoAugment CIFAR-10 (aua), per image, before crop and flip
AUGMENT_MODES = ("none", "crop-flip", "ra-crop-flip", "aua-crop-flip")


def augment(x: Tensor, mode: str, generator: torch.Generator, pad: int = 4) -> Tensor:
    """Optional RandAugment / AutoAugment (uint8 ``x``), then random crop with zero padding and
    horizontal flip as one gather over the batch (any dtype)."""
    if mode == "none":
        return x
    if mode != "crop-flip":
        x = policy_augment(x, mode.removesuffix("-crop-flip"), generator)
    b, _, h, w = x.shape
    dev = x.device
    padded = torch.nn.functional.pad(x, (pad, pad, pad, pad)).permute(0, 2, 3, 1)
    oy = torch.randint(0, 2 * pad + 1, (b, 1), generator=generator, device=dev)
    ox = torch.randint(0, 2 * pad + 1, (b, 1), generator=generator, device=dev)
    flip = torch.rand(b, 1, generator=generator, device=dev) < 0.5
    cols = torch.arange(w, device=dev)
    rows = (oy + torch.arange(h, device=dev))[:, :, None]
    cols = (ox + torch.where(flip, w - 1 - cols, cols))[:, None, :]
    return padded[torch.arange(b, device=dev)[:, None, None], rows, cols].permute(0, 3, 1, 2).contiguous()


def train_batches(
    data: LongTailData, batch_size: int, generator: torch.Generator, augment_mode: str
) -> Iterator[tuple[Tensor, Tensor]]:
    """Shuffled float batches in [0, 1] (last partial batch kept)."""
    order = torch.randperm(data.y_train.numel(), generator=generator, device=generator.device)
    for start in range(0, order.numel(), batch_size):
        idx = order[start:start + batch_size]
        yield to_float(augment(data.x_train[idx], augment_mode, generator)), data.y_train[idx]
