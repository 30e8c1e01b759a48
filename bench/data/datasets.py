"""Datasets (CIFAR-10/100, Fashion-MNIST), long-tailed subsampling and on-device batching."""

from __future__ import annotations

import gzip
import os
import pickle
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from bench.core.errors import BenchError, InputError, unknown_name
from bench.data.policy_augment import policy_augment

DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)
#: the seed of the long-tailed subsampling; fixed and independent of the training seed (official LDAM/REAT code)
LT_SEED = 0


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


@dataclass
class ImageData:
    """A whole dataset as uint8 NCHW tensors and int64 labels."""

    name: str
    classes: tuple[str, ...]
    x_train: Tensor
    y_train: Tensor
    x_test: Tensor
    y_test: Tensor


def dataset_info(name: str) -> DatasetInfo:
    if name not in DATASETS:
        raise unknown_name("dataset", name, list(DATASETS))
    return DATASETS[name]


def data_root(value: str | os.PathLike | None = None) -> Path:
    """The data folder: the explicit value, else $LTBENCH_DATA, else ./data."""
    return Path(value or os.environ.get("LTBENCH_DATA") or "data")


# --- long-tailed profile -------------------------------------------------------------------------

def long_tail_counts(n_max: int, num_classes: int, ur: float) -> list[int]:
    """n_i = int(n_max * (1/UR)^(i/(C-1))): the exponential profile of the LDAM/REAT code."""
    if not ur >= 1:
        raise InputError(f"imbalance ratio UR must be a number >= 1, got {ur}")
    ratio = 1.0 / ur
    return [int(n_max * ratio ** (i / (num_classes - 1.0))) for i in range(num_classes)]


def max_ur(n_max: int, num_classes: int) -> float:
    """The largest whole UR that leaves every class at least one training image."""
    ur = n_max
    while ur > 1 and min(long_tail_counts(n_max, num_classes, ur)) < 1:
        ur -= 1
    return float(ur)


def long_tail_indices(labels: np.ndarray, num_classes: int, ur: float, seed: int = LT_SEED) -> np.ndarray:
    """Indices of the long-tailed training subset, grouped by class (class 0 first).

    One RandomState(seed) stream shuffles each class's indices in ascending class order and the
    first n_i are kept, exactly as the official code does with NumPy's seeded global RNG.
    """
    labels = np.asarray(labels, dtype=np.int64)
    n_max = int(np.bincount(labels, minlength=num_classes).min())
    counts = long_tail_counts(n_max, num_classes, ur)
    if min(counts) < 1:
        raise InputError(f"UR {ur:g} leaves classes without a training image ({n_max} images per class); "
                         f"the largest valid UR for this data is {max_ur(n_max, num_classes):g}")
    rng = np.random.RandomState(seed)
    kept = []
    for cls, n in enumerate(counts):
        idx = np.where(labels == cls)[0]
        rng.shuffle(idx)
        kept.append(idx[:n])
    return np.concatenate(kept)


# --- file readers ----------------------------------------------------------------------------------

def _read_cifar_batch(path: Path, label_key: str) -> tuple[np.ndarray, np.ndarray]:
    with open(path, "rb") as fh:
        batch = pickle.load(fh, encoding="latin1")
    images = np.asarray(batch["data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
    return images, np.asarray(batch[label_key], dtype=np.int64)


CIFAR_LAYOUT = {
    "cifar10": ("cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)], ["test_batch"],
                "batches.meta", "label_names", "labels"),
    "cifar100": ("cifar-100-python", ["train"], ["test"], "meta", "fine_label_names", "fine_labels"),
}


def _fetch_cifar(name: str, root: Path) -> None:
    """Download through torchvision; a failure becomes a one-line error naming the fix."""
    from torchvision import datasets

    folder = root / CIFAR_LAYOUT[name][0]
    cls = datasets.CIFAR10 if name == "cifar10" else datasets.CIFAR100
    old_timeout = socket.getdefaulttimeout()
    socket.setdefaulttimeout(20)
    try:
        cls(str(root), train=True, download=True)
    except Exception as err:  # no network, proxy, partial file: all need the same fix
        raise BenchError(
            f"{name} is not in {folder} and could not be downloaded ({type(err).__name__}); on a networked "
            f"machine run `bench data fetch {name} --data-root {root}` and copy {folder.name}/ into {root}"
        ) from None
    finally:
        socket.setdefaulttimeout(old_timeout)


def load_cifar(name: str, root: Path, download: bool = True) -> ImageData:
    """CIFAR-10/100 from the python-pickle batches that torchvision downloads into ``root``."""
    folder_name, train_files, test_files, meta_file, names_key, label_key = CIFAR_LAYOUT[name]
    folder = root / folder_name
    if not all((folder / f).is_file() for f in train_files + test_files):
        if not download:
            raise BenchError(f"{name} is not in {folder}; run `bench data fetch {name} --data-root {root}`")
        _fetch_cifar(name, root)
    try:
        train = [_read_cifar_batch(folder / f, label_key) for f in train_files]
        test = [_read_cifar_batch(folder / f, label_key) for f in test_files]
        with open(folder / meta_file, "rb") as fh:
            classes = tuple(pickle.load(fh, encoding="latin1")[names_key])
    except (OSError, pickle.UnpicklingError, KeyError, ValueError, EOFError) as err:
        raise BenchError(f"{name} files in {folder} are corrupt ({err}); delete the folder and fetch again") from None
    return ImageData(
        name,
        classes,
        torch.from_numpy(np.concatenate([x for x, _ in train])),
        torch.from_numpy(np.concatenate([y for _, y in train])),
        torch.from_numpy(np.concatenate([x for x, _ in test])),
        torch.from_numpy(np.concatenate([y for _, y in test])),
    )


def _read_idx(path: Path) -> np.ndarray:
    """An IDX file (MNIST format), gzipped or not."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as fh:
        raw = fh.read()
    ndim = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


FASHION_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
                 "t10k-labels-idx1-ubyte")


def _find_fashion_folder(root: Path) -> Path | None:
    for folder in (DEBIAN_FASHION_MNIST, root / "fashion-mnist", root / "FashionMNIST" / "raw"):
        if all((folder / f).is_file() or (folder / f"{f}.gz").is_file() for f in FASHION_FILES):
            return folder
    return None


def load_fashion_mnist(root: Path, download: bool = True) -> ImageData:
    """Fashion-MNIST: the Debian package's files, then ``root``, then a torchvision download."""
    folder = _find_fashion_folder(root)
    if folder is None and download:
        from torchvision import datasets

        try:
            datasets.FashionMNIST(str(root), train=True, download=True)
        except Exception as err:
            raise BenchError(
                f"Fashion-MNIST not found ({type(err).__name__}); install it with "
                f"`apt-get install dataset-fashion-mnist` or put the IDX files in {root / 'fashion-mnist'}"
            ) from None
        folder = _find_fashion_folder(root)
    if folder is None:
        raise BenchError(
            f"Fashion-MNIST not found; run `apt-get install dataset-fashion-mnist` or put the IDX files "
            f"in {root / 'fashion-mnist'}"
        )
    arrays = []
    for f in FASHION_FILES:
        path = folder / f if (folder / f).is_file() else folder / f"{f}.gz"
        try:
            arrays.append(_read_idx(path))
        except (OSError, ValueError, EOFError) as err:
            raise BenchError(f"Fashion-MNIST file {path} is corrupt ({err}); reinstall or re-fetch it") from None
    x_train, y_train, x_test, y_test = arrays
    return ImageData(
        "fashion-mnist",
        FASHION_MNIST_CLASSES,
        torch.from_numpy(x_train.copy()).unsqueeze(1),
        torch.from_numpy(y_train.astype(np.int64)),
        torch.from_numpy(x_test.copy()).unsqueeze(1),
        torch.from_numpy(y_test.astype(np.int64)),
    )


def load_dataset(name: str, root: str | os.PathLike | None = None, download: bool = True) -> ImageData:
    """The full (balanced) dataset called ``name``."""
    dataset_info(name)
    path = data_root(root)
    if name == "fashion-mnist":
        return load_fashion_mnist(path, download)
    if name == "tiny-imagenet":
        from bench.data.tiny_imagenet import load_tiny_imagenet  # imports this module

        return load_tiny_imagenet(path)
    return load_cifar(name, path, download)


# --- long-tailed training data on the device -------------------------------------------------------

#: test sets: the dataset's balanced test split, or that split subsampled with the run's UR (TAET)
TEST_PROFILES = ("balanced", "lt")


@dataclass
class LongTailData:
    """The long-tailed training subset and the test set (``test_profile``), as uint8 tensors on one device."""

    name: str
    classes: tuple[str, ...]
    ur: float
    x_train: Tensor
    y_train: Tensor
    x_test: Tensor
    y_test: Tensor
    test_profile: str = "balanced"

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def class_counts(self) -> list[int]:
        return torch.bincount(self.y_train.cpu(), minlength=self.num_classes).tolist()


def long_tail_data(
    data: ImageData, ur: float, device: torch.device | str = "cpu", test_profile: str = "balanced"
) -> LongTailData:
    """Subsample the training split to the long-tailed profile; the test split stays balanced, or with
    ``test_profile="lt"`` gets the same profile with the test split's n_max (1000 per class for CIFAR-10)."""
    if test_profile not in TEST_PROFILES:
        raise InputError(f"test_profile must be one of {', '.join(TEST_PROFILES)}; got {test_profile!r}")
    keep = torch.from_numpy(long_tail_indices(data.y_train.numpy(), len(data.classes), ur))
    test = torch.arange(data.y_test.numel())
    if test_profile == "lt":
        test = torch.from_numpy(np.sort(long_tail_indices(data.y_test.numpy(), len(data.classes), ur)))
    return LongTailData(
        data.name, data.classes, ur,
        data.x_train[keep].to(device), data.y_train[keep].to(device),
        data.x_test[test].to(device), data.y_test[test].to(device), test_profile,
    )


def stratified_first_n(labels: Tensor, n: int | None, num_classes: int) -> Tensor:
    """Indices of the first ceil(n * n_c / N) test images of class c, n_c of the N test images being of
    class c (all images when n is None): ceil(n / C) per class on a balanced test set, the same
    class proportions on a long-tailed one."""
    if n is None or n >= labels.numel():
        return torch.arange(labels.numel(), device=labels.device)
    counts = torch.bincount(labels, minlength=num_classes)
    per_class = (-(-n * counts // labels.numel()))[labels]
    order = torch.argsort(labels, stable=True)
    rank = torch.empty_like(order)
    rank[order] = torch.arange(labels.numel(), device=labels.device) - torch.searchsorted(
        labels[order], labels[order], right=False
    )
    return torch.nonzero(rank < per_class).flatten()


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


def to_float(x: Tensor) -> Tensor:
    return x.float().div_(255.0)


def train_batches(
    data: LongTailData, batch_size: int, generator: torch.Generator, augment_mode: str
) -> Iterator[tuple[Tensor, Tensor]]:
    """Shuffled float batches in [0, 1] (last partial batch kept)."""
    order = torch.randperm(data.y_train.numel(), generator=generator, device=generator.device)
    for start in range(0, order.numel(), batch_size):
        idx = order[start:start + batch_size]
        yield to_float(augment(data.x_train[idx], augment_mode, generator)), data.y_train[idx]
