"""Tiny-ImageNet-LT from a local .npz repack: md5 check, layout, long-tailed profile, 64x64 models, a run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from bench.cli import main
from bench.core.errors import BenchError
from bench.data import tiny_imagenet
from bench.data.longtail import long_tail_counts, long_tail_data
from bench.models import build_model


def write_tiny_imagenet(root: Path, train_per_class: int = 3, val_per_class: int = 1) -> dict[str, str]:
    """A small repack in the real files' format; returns its md5 sums by file name."""
    rng = np.random.RandomState(0)
    folder = root / tiny_imagenet.FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    for name, per_class in (("train.npz", train_per_class), ("val.npz", val_per_class)):
        labels = np.repeat(np.arange(200), per_class)
        rng.shuffle(labels)
        images = rng.randint(0, 256, size=(labels.size, 64, 64, 3), dtype=np.uint8)
        np.savez(folder / name, image=images, label=labels)
    return {name: tiny_imagenet.md5sum(folder / name) for name in ("train.npz", "val.npz")}


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    root = tmp_path_factory.mktemp("tin")
    return root, write_tiny_imagenet(root)


def test_loads_nchw_uint8_with_the_repacks_layout(tiny_root):
    root, sums = tiny_root
    data = tiny_imagenet.load_tiny_imagenet(root, md5=sums)
    assert data.x_train.shape == (600, 3, 64, 64) and data.x_train.dtype == torch.uint8
    assert data.x_test.shape == (200, 3, 64, 64) and len(data.classes) == 200
    with np.load(root / tiny_imagenet.FOLDER / "train.npz") as npz:
        assert torch.equal(data.x_train[5], torch.from_numpy(npz["image"][5]).permute(2, 0, 1))
        assert data.y_train[5].item() == npz["label"][5]
    lt = long_tail_data(data, 3)
    assert lt.class_counts == long_tail_counts(3, 200, 3)  # n_max = the per-class count (500 for the real file)


def test_real_md5_sums_are_checked_with_a_one_line_error(tiny_root):
    root, _ = tiny_root
    with pytest.raises(BenchError, match=r"has md5 [0-9a-f]{32}, expected db414016436353892fdf00cb30b9ee57") as err:
        tiny_imagenet.load_tiny_imagenet(root)
    assert "\n" not in str(err.value)


def test_missing_and_malformed_files_name_the_fix(tmp_path):
    with pytest.raises(BenchError, match="not found; put the .npz repack"):
        tiny_imagenet.load_tiny_imagenet(tmp_path)
    folder = tmp_path / tiny_imagenet.FOLDER
    folder.mkdir()
    np.savez(folder / "train.npz", image=np.zeros((2, 32, 32, 3), np.uint8), label=np.zeros(2))
    np.savez(folder / "val.npz", image=np.zeros((2, 64, 64, 3), np.uint8), label=np.zeros(2))
    sums = {n: tiny_imagenet.md5sum(folder / n) for n in ("train.npz", "val.npz")}
    with pytest.raises(BenchError, match="image must be uint8 N x 64 x 64 x 3"):
        tiny_imagenet.load_tiny_imagenet(tmp_path, md5=sums)


def test_preact_resnet18_trains_at_64x64():
    torch.manual_seed(0)
    net = build_model("preact-resnet18", 3, lambda d: torch.nn.Linear(d, 200))
    out = net.forward_features(torch.rand(2, 3, 64, 64))
    assert out.features.shape == (2, 512) and out.logits.shape == (2, 200)
    torch.nn.functional.cross_entropy(out.logits, torch.tensor([0, 199])).backward()
    assert all(torch.isfinite(p.grad).all() for p in net.parameters() if p.grad is not None)


@pytest.mark.slow
def test_bench_run_on_tiny_imagenet_lt(tmp_path, tiny_root, monkeypatch):
    root, sums = tiny_root
    monkeypatch.setattr(tiny_imagenet, "MD5", sums)  # the fixture's sums stand in for the real files'
    out = tmp_path / "results"
    result = CliRunner().invoke(main, [
        "run", "--methods", "at-bsl", "--dataset", "tiny-imagenet", "--ur", "3", "--arch", "cnn-small",
        "--preset", "smoke", "--data-root", str(root), "--out", str(out), "--no-report", "--no-progress",
        "--set", "steps=1", "--set", "augment=ra-crop-flip"])
    assert result.exit_code == 0, result.output
    (run_dir,) = [p for p in out.iterdir() if p.is_dir()]
    config = json.loads((run_dir / "config.json").read_text())
    assert config["class_counts"] == long_tail_counts(3, 200, 3) and config["config"]["eps"] == 8 / 255
    record = json.loads((run_dir / "eval.json").read_text())
    assert record["n_test"] == 200 and len(record["attacks"]["pgd20"]["per_class_acc"]) == 200
