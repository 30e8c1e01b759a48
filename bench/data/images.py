"""A whole dataset in memory: uint8 NCHW images and int64 labels; images to floats in [0, 1]."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor


@dataclass
class ImageData:
    """A whole dataset as uint8 NCHW tensors and int64 labels."""

    name: str
    classes: tuple[str, ...]
    x_train: Tensor
    y_train: Tensor
    x_test: Tensor
    y_test: Tensor


def to_float(x: Tensor) -> Tensor:
    return x.float().div_(255.0)
