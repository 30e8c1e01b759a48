"""A full disk is named as such, in one line, and the previous file is kept."""

from __future__ import annotations

import errno
import os

import pytest
import torch

from bench.core import store
from bench.core.errors import BenchError


def test_a_full_disk_during_a_checkpoint_write_names_the_file_and_keeps_the_previous_one(tmp_path, monkeypatch):
    path = tmp_path / "ckpt" / "last.pt"
    store.save_checkpoint({"epoch": 0, "w": torch.zeros(3)}, path)

    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(store.os, "fsync", full)
    with pytest.raises(BenchError) as err:
        store.save_checkpoint({"epoch": 1, "w": torch.ones(3)}, path)
    message = str(err.value)
    assert "\n" not in message and str(path) in message and "the disk is full" in message
    monkeypatch.undo()
    assert store.load_checkpoint(path)["epoch"] == 0
    assert [p.name for p in path.parent.iterdir()] == ["last.pt"]  # no temp file left behind

