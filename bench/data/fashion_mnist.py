"""Fashion-MNIST from IDX files: the Debian package's, a data folder's, or a torchvision download."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import torch

from bench.core.errors import BenchError
from bench.data.images import ImageData

DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
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
