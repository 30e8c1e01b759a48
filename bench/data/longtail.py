"""Long-tailed subsets: the exponential class profile, the training (and optionally test) subsample on the
device, and the stratified first-n test images."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from bench.core.errors import InputError
from bench.data.images import ImageData

#: the seed of the long-tailed subsampling; fixed and independent of the training seed (official LDAM/REAT code)
LT_SEED = 0


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
