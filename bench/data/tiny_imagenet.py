"""Tiny-ImageNet (200 classes, 64x64 RGB) from the local .npz repack used by the AT-BSL code.

``DATA_ROOT/tiny-imagenet/train.npz`` (100,000 images) and ``val.npz`` (10,000 images, the test split),
each with the keys ``image`` (uint8, N x 64 x 64 x 3) and ``label`` (0..199). Nothing is downloaded; the
files' md5 sums are checked against the repack's.
"""

from __future__ import annotations

import hashlib
import zipfile
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch

from bench.core.errors import BenchError
from bench.data.images import ImageData

FOLDER = "tiny-imagenet"
NUM_CLASSES, IMAGE_SIZE = 200, 64
#: md5 sums of AT-BSL's repack, by file name
MD5 = {"train.npz": "db414016436353892fdf00cb30b9ee57", "val.npz": "7762694b6217fec8ba1a7be3c20ef218"}


def md5sum(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 22), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_split(path: Path, expected_md5: str) -> tuple[np.ndarray, np.ndarray]:
    """Images (N x 64 x 64 x 3 uint8) and labels of one checked .npz file."""
    if not path.is_file():
        raise BenchError(f"Tiny-ImageNet file {path} not found; put the .npz repack (train.npz and val.npz, "
                         f"keys image and label) in {path.parent}")
    got = md5sum(path)
    if got != expected_md5:
        raise BenchError(f"{path} has md5 {got}, expected {expected_md5}; replace it with the original "
                         f"Tiny-ImageNet {path.name} repack")
    try:
        with np.load(path) as npz:
            images, labels = np.asarray(npz["image"]), np.asarray(npz["label"]).astype(np.int64).ravel()
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as err:
        raise BenchError(f"{path} cannot be read as a .npz with keys image and label ({err})") from None
    if images.dtype != np.uint8 or images.shape[1:] != (IMAGE_SIZE, IMAGE_SIZE, 3) or len(images) != len(labels):
        raise BenchError(f"{path}: image must be uint8 N x {IMAGE_SIZE} x {IMAGE_SIZE} x 3 with one label per "
                         f"image, got {images.dtype} {images.shape} and {len(labels)} labels")
    if labels.size and not 0 <= labels.min() <= labels.max() < NUM_CLASSES:
        raise BenchError(f"{path}: labels must lie in 0..{NUM_CLASSES - 1}")
    return images, labels


def load_tiny_imagenet(root: Path, md5: Mapping[str, str] | None = None) -> ImageData:
    """Train and val (as the test split) from ``root/tiny-imagenet``; ``md5`` maps file name to sum."""
    sums = MD5 if md5 is None else md5
    folder = Path(root) / FOLDER
    (x_train, y_train), (x_test, y_test) = (read_split(folder / name, sums[name]) for name in ("train.npz", "val.npz"))

    def nchw(images: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()

    return ImageData("tiny-imagenet", tuple(f"class{c:03d}" for c in range(NUM_CLASSES)),
                     nchw(x_train), torch.from_numpy(y_train), nchw(x_test), torch.from_numpy(y_test))
