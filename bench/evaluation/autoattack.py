"""The AutoAttack adapter: pyautoattack's standard evaluation of one chunk of images, how many images one call
takes (``aa_chunk``), and its reliability-check warnings.

pyautoattack's loops are strictly serial and host-bound on a GPU, so there a call takes as many images as the
device memory holds (all requested ones where they fit); elsewhere it takes the evaluation batch size. Each call
reseeds the attacks (every attack's ``perturb`` seeds the generators), so results in other chunks are the same
attack up to AutoAttack's random draws (docs/performance.md, "AutoAttack chunks").
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor

from bench.data.images import to_float
from bench.models.inference import InferenceModel

#: AutoAttack "standard" attacks 9 target classes; a C-class model has only C - 1
AA_MAX_TARGETS = 9
#: APGD-T's targeted DLR loss reads the fourth-largest logit
AA_MIN_CLASSES = 4
#: the AutoAttack parameters that say how the images were split into pyautoattack calls; a stored result is
#: reused whatever they are (a record without them was computed in chunks of its ``batch_size``)
CHUNK_KEYS = ("chunk", "chunk_rule")
#: pyautoattack's own fp32 image-sized buffers per image, besides the model's forward and input gradient. Live
#: tensors tracked through a call on CPU peak at about 64 per image in FAB-T's Linf projection, which sorts
#: rows of (2 x images) x pixels with int64 indices, and at about 15 in APGD; 80 leaves a margin
AA_IMAGE_COPIES = 80
#: APGD's per-image loss, best-loss and accuracy histories: 3 x (100 iterations + 1) fp32 values
AA_HISTORY_BYTES = 3 * 101 * 4
#: the share of the free device memory that one pyautoattack call may plan for; the rest is left to the
#: allocator's fragmentation, cuDNN workspaces and other processes on the device (grid workers share one GPU)
AA_MEMORY_SHARE = 0.5
#: images in the memory probe's batch
AA_PROBE_IMAGES = 128


def autoattack_predictions(model: InferenceModel, x: Tensor, y: Tensor, params: dict[str, Any]) -> Tensor:
    """Labels predicted on AutoAttack's examples: the clean prediction where it is already wrong."""
    from pyautoattack import AutoAttack  # loads only when AutoAttack runs

    adversary = AutoAttack(model, eps=params["eps"], norm=params["norm"], version=params["version"],
                           seed=params["seed"], device=x.device)
    adversary.apgd_targeted.n_target_classes = params["n_target_classes"]
    adversary.fab.n_target_classes = params["n_target_classes"]
    # AutoAttack reseeds the global generators; keep them as they were for whatever runs next
    with torch.random.fork_rng(devices=[x.device] if x.device.type == "cuda" else []):
        _, y_adv = adversary.run_standard_evaluation(x, y, batch_size=y.numel())
    return y_adv


def aa_bytes_per_image(model_bytes: float, image_bytes: int) -> float:
    """Device memory one image takes in a pyautoattack call: the model's forward and input gradient
    (``model_bytes``, from the probe) plus pyautoattack's own buffers."""
    return model_bytes + AA_IMAGE_COPIES * image_bytes + AA_HISTORY_BYTES


def aa_chunk_size(n: int, model_bytes: float, image_bytes: int, free_bytes: int) -> int:
    """Images per pyautoattack call: all ``n`` where they fit in ``AA_MEMORY_SHARE`` of ``free_bytes``, else
    as many as fit, at least 1."""
    fit = int(AA_MEMORY_SHARE * free_bytes // aa_bytes_per_image(model_bytes, image_bytes))
    return max(1, min(n, fit))


def input_gradient(model: InferenceModel, x: Tensor) -> Tensor:
    """The gradient of the summed logits with respect to the images ``x``."""
    probe = x.detach().clone().requires_grad_()
    with torch.enable_grad():
        return torch.autograd.grad(model(probe).sum(), probe)[0]


def probe_bytes_per_image(model: InferenceModel, x: Tensor) -> float:
    """CUDA memory per image of a forward and input-gradient backward through ``model`` on the float batch ``x``:
    the peak allocated above what was allocated before, over the batch size. A first pass warms up (cuBLAS and
    cuDNN workspaces stay allocated), the second is measured."""
    input_gradient(model, x)
    before = torch.cuda.memory_allocated(x.device)
    torch.cuda.reset_peak_memory_stats(x.device)
    input_gradient(model, x)
    return (torch.cuda.max_memory_allocated(x.device) - before) / x.shape[0]


def free_device_bytes(device: torch.device) -> int:
    """Free CUDA memory: the device's, plus what this process's allocator holds unused."""
    free, _ = torch.cuda.mem_get_info(device)
    return free + torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)


def aa_chunk(model: InferenceModel, x_all: Tensor, batch_size: int) -> tuple[int, str]:
    """Images per pyautoattack call over the test images ``x_all`` (uint8) and how that was chosen: on CUDA
    what the memory probe says fits, all of them where they do; on any other device ``batch_size``."""
    if x_all.device.type != "cuda":
        return batch_size, "evaluation batch size"
    probe = to_float(x_all[:AA_PROBE_IMAGES])
    model_bytes = probe_bytes_per_image(model, probe)
    image_bytes, free = probe[0].numel() * probe.element_size(), free_device_bytes(x_all.device)
    chunk = aa_chunk_size(x_all.shape[0], model_bytes, image_bytes, free)
    per_image = aa_bytes_per_image(model_bytes, image_bytes)
    return chunk, f"memory probe: {per_image / 2**20:.3g} MiB/image, {free / 2**30:.1f} GiB free"


@contextmanager
def autoattack_checks() -> Iterator[list[str]]:
    """Collect the warnings of AutoAttack's own reliability checks (e.g. Square lowering the robust accuracy
    that the gradient attacks left, a sign of gradient masking), which pyautoattack logs as ``auto-attack``."""
    messages: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            messages.append(record.getMessage())

    logger, handler = logging.getLogger("auto-attack"), Collect(logging.WARNING)
    logger.addHandler(handler)
    try:
        yield messages
    finally:
        logger.removeHandler(handler)
