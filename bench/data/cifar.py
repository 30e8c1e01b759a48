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
