"""Datasets: long-tailed counts, the CIFAR loader on fixture files, batching helpers."""

from pathlib import Path

import numpy as np
import pytest
import torch

from bench.core.errors import BenchError, InputError
from bench.data.augment import augment
from bench.data.datasets import load_dataset
from bench.data.fashion_mnist import DEBIAN_FASHION_MNIST
from bench.data.longtail import long_tail_counts, long_tail_data, long_tail_indices, stratified_first_n


def test_cifar10_ur100_counts_match_official_profile():
    counts = long_tail_counts(5000, 10, 100)
    assert counts == [5000, 2997, 1796, 1077, 645, 387, 232, 139, 83, 50]
    assert sum(counts) == 12406


@pytest.mark.parametrize(
    ("n_max", "classes", "ur", "total"),
    [(5000, 10, 50, 13996), (5000, 10, 10, 20431), (500, 100, 10, 19573), (500, 100, 50, 12608),
     (6000, 10, 100, 14886)],
)
def test_long_tail_totals(n_max, classes, ur, total):
    assert sum(long_tail_counts(n_max, classes, ur)) == total


def test_cifar100_ur10_ends():
    counts = long_tail_counts(500, 100, 10)
    assert counts[:5] == [500, 488, 477, 466, 455]
    assert counts[-5:] == [54, 53, 52, 51, 50]


def test_ur_one_is_balanced_and_bad_ur_rejected():
    assert long_tail_counts(100, 10, 1) == [100] * 10
    with pytest.raises(InputError):
        long_tail_counts(100, 10, 0.5)


def test_long_tail_indices_follow_one_seeded_stream():
    labels = np.repeat(np.arange(4), 10)[np.random.RandomState(3).permutation(40)]
    idx = long_tail_indices(labels, 4, 10)
    counts = long_tail_counts(10, 4, 10)
    assert np.bincount(labels[idx], minlength=4).tolist() == counts
    assert (np.diff(labels[idx]) >= 0).all(), "kept images are grouped by class, class 0 first"
    rng = np.random.RandomState(0)
    expected = []
    for c, n in enumerate(counts):
        cls_idx = np.where(labels == c)[0]
        rng.shuffle(cls_idx)
        expected.extend(cls_idx[:n])
    assert idx.tolist() == expected
    assert long_tail_indices(labels, 4, 10).tolist() == idx.tolist()


def test_cifar_fixture_files_load_through_real_loader(cifar_root: Path):
    data = load_dataset("cifar10", cifar_root, download=False)
    assert data.x_train.shape == (200, 3, 32, 32) and data.x_train.dtype == torch.uint8
    assert data.x_test.shape == (100, 3, 32, 32)
    assert data.classes[0] == "class0" and len(data.classes) == 10
    lt = long_tail_data(data, 10)
    assert lt.class_counts == long_tail_counts(20, 10, 10)
    assert torch.bincount(lt.y_test).tolist() == [10] * 10, "the test set stays balanced"
    c100 = load_dataset("cifar100", cifar_root, download=False)
    assert c100.x_train.shape == (500, 3, 32, 32) and len(c100.classes) == 100


def test_missing_cifar_names_the_fix(tmp_path: Path):
    with pytest.raises(BenchError, match="bench data fetch cifar10"):
        load_dataset("cifar10", tmp_path, download=False)


def test_corrupt_cifar_names_the_fix(tmp_path: Path, cifar_root: Path):
    import shutil

    shutil.copytree(cifar_root / "cifar-10-batches-py", tmp_path / "cifar-10-batches-py")
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").write_bytes(b"not a pickle")
    with pytest.raises(BenchError, match="corrupt"):
        load_dataset("cifar10", tmp_path, download=False)


@pytest.mark.skipif(not DEBIAN_FASHION_MNIST.exists(), reason="apt-get install dataset-fashion-mnist")
def test_fashion_mnist_from_debian_package():
    data = load_dataset("fashion-mnist", download=False)
    assert data.x_train.shape == (60000, 1, 28, 28) and data.x_test.shape == (10000, 1, 28, 28)
    assert sum(long_tail_data(data, 100).class_counts) == 14886


def test_stratified_first_n_takes_first_images_of_each_class():
    labels = torch.tensor([2, 0, 1, 0, 2, 1, 0, 1, 2])
    idx = stratified_first_n(labels, 3, 3)
    assert idx.tolist() == [0, 1, 2]
    assert stratified_first_n(labels, 6, 3).tolist() == [0, 1, 2, 3, 4, 5]
    assert stratified_first_n(labels, None, 3).numel() == 9


def test_augment_keeps_shape_and_range_and_is_seeded():
    x = torch.rand(8, 3, 32, 32)
    a = augment(x, "crop-flip", torch.Generator().manual_seed(1))
    b = augment(x, "crop-flip", torch.Generator().manual_seed(1))
    assert a.shape == x.shape and torch.equal(a, b)
    assert a.min() >= 0 and a.max() <= 1
    assert not torch.equal(a, x)
    assert augment(x, "none", torch.Generator()) is x
