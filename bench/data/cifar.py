"""CIFAR-10/100 from the python-pickle batches that torchvision downloads."""

from __future__ import annotations

import pickle
import socket
from pathlib import Path

import numpy as np
import torch

from bench.core.errors import BenchError
from bench.data.images import ImageData


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


def write_synthetic_cifar10(root: Path, train_per_class: int = 5000, test_per_class: int = 1000,
                            seed: int = 0) -> Path:
    """Random CIFAR-10 images in torchvision's python-pickle layout under ``root/cifar-10-batches-py`` (the
    real sizes by default), so that ``load_cifar`` reads them as CIFAR-10; returns ``root``."""
    rng = np.random.RandomState(seed)
    folder = root / CIFAR_LAYOUT["cifar10"][0]
    folder.mkdir(parents=True, exist_ok=True)
    labels = np.repeat(np.arange(10), train_per_class)
    rng.shuffle(labels)
    images = rng.randint(0, 256, size=(labels.size, 3072), dtype=np.uint8)
    for i, part in enumerate(np.array_split(np.arange(labels.size), 5), start=1):
        with open(folder / f"data_batch_{i}", "wb") as fh:
            pickle.dump({"data": images[part], "labels": labels[part].tolist()}, fh)
    test_labels = np.tile(np.arange(10), test_per_class)
    with open(folder / "test_batch", "wb") as fh:
        pickle.dump({"data": rng.randint(0, 256, size=(test_labels.size, 3072), dtype=np.uint8),
                     "labels": test_labels.tolist()}, fh)
    with open(folder / "batches.meta", "wb") as fh:
        pickle.dump({"label_names": [f"class{c}" for c in range(10)]}, fh)
    return root


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
