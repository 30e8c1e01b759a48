"""The dataset registry: each dataset's shape, classes and default augmentation, and its loader."""

from __future__ import annotations

import os
import reprlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from bench.core import plugins
from bench.core.errors import BenchError, InputError, unknown_name
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


@dataclass(frozen=True)
class DatasetLoader:
    """A plugin dataset: its ``info`` and ``load(root)``, which returns the full balanced ImageData."""

    info: DatasetInfo
    load: Callable[[Path], ImageData]


#: loaders of plugin datasets (``register_dataset``)
LOADERS: dict[str, Callable[[Path], ImageData]] = {}


def register_dataset(name: str, loader: Any) -> None:
    """Add a dataset (from a plugin): a ``DatasetLoader`` (its ``info`` and its ``load(root)``)."""
    if not isinstance(loader, DatasetLoader):
        raise InputError(f"dataset {name!r} must be a bench.data.datasets.DatasetLoader, got {reprlib.repr(loader)}")
    if loader.info.name != name:
        raise InputError(f"dataset {name!r}: its DatasetInfo is named {loader.info.name!r}; use the same name")
    plugins.taken("dataset", name)
    DATASETS[name] = loader.info
    LOADERS[name] = lambda root: _checked(loader.info, loader.load(root))
    plugins.registered("dataset", name)


plugins.add_registry("dataset", plugins.Registry(
    names=lambda: DATASETS, add=register_dataset,
    holds=lambda name, obj: isinstance(obj, DatasetLoader) and DATASETS.get(name) is obj.info))


def _checked(info: DatasetInfo, data: Any) -> ImageData:
    """The ImageData a plugin loader returned, when it has the shapes and types its DatasetInfo promises."""
    shape = (info.channels, info.image_size, info.image_size)
    problem = None
    if not isinstance(data, ImageData):
        problem = f"returned {type(data).__name__}, not bench.data.images.ImageData"
    elif any(x.dtype != torch.uint8 or tuple(x.shape[1:]) != shape for x in (data.x_train, data.x_test)):
        problem = f"images must be uint8 tensors of shape (N, {', '.join(map(str, shape))})"
    elif any(y.dtype != torch.int64 or y.ndim != 1 for y in (data.y_train, data.y_test)):
        problem = "labels must be 1-d int64 tensors"
    elif len(data.classes) != info.num_classes:
        problem = f"has {len(data.classes)} class names, its DatasetInfo says {info.num_classes} classes"
    if problem:
        raise BenchError(f"dataset {info.name!r} (plugin) {problem}; fix its loader")
    return data


def dataset_info(name: str) -> DatasetInfo:
    plugins.load("dataset")
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
    if name in LOADERS:
        return LOADERS[name](path)
    if name == "fashion-mnist":
        return load_fashion_mnist(path, download)
    if name == "tiny-imagenet":
        return load_tiny_imagenet(path)
    return load_cifar(name, path, download)
