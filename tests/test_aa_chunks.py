"""AutoAttack's chunk: how many images one pyautoattack call takes, and the memory estimate behind it."""

from __future__ import annotations

import weakref
from typing import Any

import pytest
import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from bench.evaluation.autoattack import (
    aa_bytes_per_image,
    aa_chunk,
    aa_chunk_size,
    autoattack_predictions,
    input_gradient,
)
from bench.evaluation.suite import attack_params
from bench.models.inference import InferenceModel
from methods.base import Method

C = 4
#: an image of 100 bytes whose model takes 788: 788 + 80 copies + 1,212 bytes of APGD histories = 10,000 bytes
MODEL_BYTES, IMAGE_BYTES, PER_IMAGE = 788, 100, 10_000


def test_bytes_per_image_add_pyautoattacks_buffers_to_the_model() -> None:
    assert aa_bytes_per_image(MODEL_BYTES, IMAGE_BYTES) == PER_IMAGE


def test_every_image_in_one_call_where_they_fit() -> None:
    assert aa_chunk_size(1000, MODEL_BYTES, IMAGE_BYTES, 2**30) == 1000
    assert aa_chunk_size(1000, MODEL_BYTES, IMAGE_BYTES, 2 * 1000 * PER_IMAGE) == 1000, "exactly half the free memory"


def test_as_many_as_half_the_free_memory_holds() -> None:
    assert aa_chunk_size(10_000, MODEL_BYTES, IMAGE_BYTES, 6_000_000) == 300
    assert aa_chunk_size(10_000, MODEL_BYTES, IMAGE_BYTES, 6_019_999) == 300
    assert aa_chunk_size(10_000, MODEL_BYTES, IMAGE_BYTES, 6_020_000) == 301


def test_at_least_one_image_and_never_more_than_asked() -> None:
    assert aa_chunk_size(1000, MODEL_BYTES, IMAGE_BYTES, 0) == 1
    assert aa_chunk_size(1000, MODEL_BYTES, IMAGE_BYTES, PER_IMAGE) == 1
    assert aa_chunk_size(1, MODEL_BYTES, IMAGE_BYTES, 2**40) == 1
    assert aa_chunk_size(7, MODEL_BYTES, IMAGE_BYTES, 2**40) == 7


def test_off_cuda_the_chunk_is_the_evaluation_batch_size() -> None:
    model = InferenceModel(nn.Sequential(nn.Flatten(), nn.Linear(64, C)), Method({}, [4, 3, 2, 1]))
    images = torch.zeros(1000, 1, 8, 8, dtype=torch.uint8)
    assert aa_chunk(model, images, 500) == (500, "evaluation batch size")


class LiveBytes(TorchDispatchMode):
    """The peak bytes of the CPU tensor storages that the operations run inside it create and keep alive."""

    def __init__(self) -> None:
        super().__init__()
        self.owners: dict[int, tuple[int, set[int]]] = {}
        self.now = self.peak = 0

    def _release(self, ptr: int, tensor_id: int) -> None:
        size, owners = self.owners[ptr]
        owners.discard(tensor_id)
        if not owners:
            self.now -= size
            del self.owners[ptr]

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        out = func(*args, **(kwargs or {}))
        for tensor in tree_flatten(out)[0]:
            if not isinstance(tensor, torch.Tensor) or tensor.untyped_storage().data_ptr() == 0:
                continue
            storage = tensor.untyped_storage()
            if storage.data_ptr() not in self.owners:
                self.owners[storage.data_ptr()] = (storage.nbytes(), set())
                self.now += storage.nbytes()
                self.peak = max(self.peak, self.now)
            owners = self.owners[storage.data_ptr()][1]
            if id(tensor) not in owners:
                owners.add(id(tensor))
                weakref.finalize(tensor, self._release, storage.data_ptr(), id(tensor))
        return out


@pytest.mark.slow
def test_the_estimate_bounds_pyautoattacks_peak_memory() -> None:
    """Tracked on CPU over a whole standard AutoAttack call: FAB-T's projection, its peak, sits within the
    estimate and above half of it. Every image starts robust (labelled with the model's prediction)."""
    torch.manual_seed(0)
    model = InferenceModel(nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, C)).eval(),
                           Method({}, [4, 3, 2, 1]))
    x = torch.rand(32, 1, 8, 8)
    with torch.no_grad():
        y = model(x).argmax(1)
    with LiveBytes() as probe:
        input_gradient(model, x)
    with LiveBytes() as call:
        autoattack_predictions(model, x, y, attack_params("aa", 0.1, 0.025, C, 0))
    estimate = y.numel() * aa_bytes_per_image(probe.peak / y.numel(), x[0].numel() * x.element_size())
    assert estimate / 2 < call.peak <= estimate
