"""The dataset registry: each dataset's shape, classes and default augmentation, and its loader."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from bench.core.errors import unknown_name
from bench.data.cifar import load_cifar
from bench.data.fashion_mnist import load_fashion_mnist
from bench.data.images import ImageData
from bench.data.tiny_imagenet import load_tiny_imagenet


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    num_classes: int
    image_size: int
    channels: int
    augment: str  # default augmentation: "crop-flip" or "none"
    description: str
    train_per_class: int  # training images per class of the full (balanced) dataset


DATASETS: dict[str, DatasetInfo] = {
    "cifar10": DatasetInfo("cifar10", 10, 32, 3, "crop-flip", "CIFAR-10 (50k train / 10k test, 32x32 RGB)", 5000),
    "cifar100": DatasetInfo("cifar100", 100, 32, 3, "crop-flip", "CIFAR-100 (50k train / 10k test, 32x32 RGB)", 500),
    "fashion-mnist": DatasetInfo(
        "fashion-mnist", 10, 28, 1, "none", "Fashion-MNIST (60k train / 10k test, 28x28 grey)", 6000
    ),
    "tiny-imagenet": DatasetInfo(
        "tiny-imagenet", 200, 64, 3, "crop-flip", "Tiny-ImageNet (100k train / 10k val as test, 64x64 RGB; local .npz)",
        500,
    ),
}


def dataset_info(name: str) -> DatasetInfo:
    if name not in DATASETS:
        raise unknown_name("dataset", name, list(DATASETS))
    return DATASETS[name]


def data_root(value: str | os.PathLike | None = None) -> Path:
    """The data folder: the explicit value, else $LTBENCH_DATA, else ./data."""
    return Path(value or os.environ.get("LTBENCH_DATA") or "data")


def load_dataset(name: str, root: str | os.PathLike | None = None, download: bool = True) -> ImageData:
    """The full (balanced) dataset called ``name``."""
    dataset_info(name)
    path = data_root(root)
    if name == "fashion-mnist":
        return load_fashion_mnist(path, download)
    if name == "tiny-imagenet":
        return load_tiny_imagenet(path)
    return load_cifar(name, path, download)
