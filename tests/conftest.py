"""Shared fixtures: tiny CIFAR-format dataset files built on the fly, and a one-node SLURM cluster."""

from __future__ import annotations

import os
import pickle
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from slurm_cluster import SlurmCluster, missing_programs

from bench.core.progress import Progress
from bench.data.cifar import write_synthetic_cifar10
from bench.data.datasets import load_dataset
from bench.data.longtail import LongTailData, long_tail_data
from bench.evaluation.suite import epoch_validation
from bench.training.config import RunConfig
from bench.training.loop import Trainee, train


def write_cifar100(root: Path, train_per_class: int = 5, test_per_class: int = 2, seed: int = 0) -> Path:
    """A CIFAR-100 folder in torchvision's python-pickle layout with random images."""
    rng = np.random.RandomState(seed)
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True, exist_ok=True)
    for name, per_class in (("train", train_per_class), ("test", test_per_class)):
        labels = np.repeat(np.arange(100), per_class)
        with open(folder / name, "wb") as fh:
            pickle.dump({"data": rng.randint(0, 256, size=(labels.size, 3072), dtype=np.uint8),
                         "fine_labels": labels.tolist()}, fh)
    with open(folder / "meta", "wb") as fh:
        pickle.dump({"fine_label_names": [f"c{c}" for c in range(100)]}, fh)
    return root


@pytest.fixture(autouse=True, scope="session")
def one_thread() -> Iterator[None]:
    """Tests use tiny tensors: one thread avoids OpenMP start-up and contention costs."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def cifar_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data root holding tiny CIFAR-10 and CIFAR-100 datasets."""
    root = tmp_path_factory.mktemp("data")
    write_synthetic_cifar10(root, train_per_class=20, test_per_class=10)
    write_cifar100(root)
    return root


@pytest.fixture
def tiny_data(cifar_root: Path) -> LongTailData:
    """The tiny CIFAR-10 at UR 10, loaded on the CPU."""
    return long_tail_data(load_dataset("cifar10", cifar_root, download=False), 10)


def train_with_validation(cfg: RunConfig, data: LongTailData, run_dir: Path, device: torch.device,
                          progress: Progress) -> Trainee:
    """The training core with the per-epoch check that `bench run` gives it."""
    validate = epoch_validation(data, n=cfg.epoch_eval_n, eps=cfg.eps, step_size=cfg.step_size, seed=cfg.seed,
                                progress=progress)
    return train(cfg, data, run_dir, device, progress, validate)


@pytest.fixture
def tiny_args(cifar_root: Path) -> list[str]:
    """`bench run` options that make a run on the tiny CIFAR-10 take a second or two (no report)."""
    return ["--data-root", str(cifar_root), "--no-report", *TINY]


TINY = ["--preset", "smoke", "--dataset", "cifar10", "--ur", "10", "--set", "steps=1", "--eval-n", "20",
        "--set", "epoch_eval_n=20", "--set", "batch_size=32", "--no-progress"]


@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SlurmCluster]:
    """A running one-node SLURM cluster (partition ``debug``); SLURM_CONF points the commands at it."""
    missing = missing_programs()
    if missing:
        message = (f"SLURM is not installed (no {', '.join(missing)}): apt-get install slurmctld slurmd "
                   "slurm-client munge")
        if os.environ.get("LTBENCH_REQUIRE_SLURM"):  # CI: the SLURM tests must run
            pytest.fail(message)
        pytest.skip(message)
    cluster = SlurmCluster(tmp_path_factory.mktemp("slurm"))
    before = os.environ.get("SLURM_CONF")
    try:
        cluster.start()
        os.environ.update(cluster.env)
        yield cluster
    finally:
        cluster.stop()
        if before is None:
            os.environ.pop("SLURM_CONF", None)
        else:
            os.environ["SLURM_CONF"] = before
