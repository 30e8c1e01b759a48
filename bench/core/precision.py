"""Run precision: fp32, or bf16 autocast (optimiser state and BN statistics stay fp32); `auto` picks per device.

`auto` is part of the run id as the word ``auto`` and resolves where the run trains, from measurements
(docs/performance.md): fp32 on CUDA (bf16 autocast measured slower for the image sizes ltbench ships, e.g.
0.85x for resnet18 on an H200), bf16 on CPUs that compute it natively (AMX or AVX-512 BF16, as torch reports
them), fp32 on other CPUs, where bf16 is emulated and several times slower. The resolved precision is
recorded with every epoch and in the checkpoint; a resumed run keeps it.
"""

from __future__ import annotations

from contextlib import AbstractContextManager

import torch
from torch import Tensor, nn

from bench.core.errors import InputError

PRECISIONS = ("fp32", "bf16", "auto")


def cpu_has_bf16() -> bool:
    """Whether this CPU computes bf16 natively (AMX tiles or AVX-512 BF16)."""
    return bool(torch.cpu._is_amx_tile_supported() or torch.cpu._is_avx512_bf16_supported())


def default_device_type() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def device_name(device: torch.device) -> str:
    """The device in words, as run records store it: the GPU's name, or the CPU and its torch threads."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({torch.get_num_threads()} threads)"


def resolve_precision(name: str, device_type: str) -> str:
    """``fp32`` or ``bf16``; ``auto`` becomes what was measured faster on ``device_type`` (module docstring)."""
    if name not in PRECISIONS:
        raise InputError(f"precision must be one of {', '.join(PRECISIONS)}, got {name!r}")
    if name != "auto":
        return name
    if device_type == "cpu" and cpu_has_bf16():
        return "bf16"
    return "fp32"


def autocast(precision: str, device: torch.device) -> AbstractContextManager:
    """bf16 autocast for ``precision == "bf16"``, a no-op context otherwise."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")


class AutocastModel(nn.Module):
    """Runs ``model``'s forward under the precision's autocast and returns fp32 logits.

    Attacks take the input gradient through it, so PGD's forward and backward run in bf16 while the
    per-sample losses, the signs and the projection stay fp32.
    """

    def __init__(self, model: nn.Module, precision: str):
        super().__init__()
        self.model = model
        self.precision = precision

    def forward(self, x: Tensor) -> Tensor:
        with autocast(self.precision, x.device):
            out = self.model(x)
        return out.float()


def with_precision(model: nn.Module, precision: str) -> nn.Module:
    """``model`` itself in fp32, else wrapped in ``AutocastModel``."""
    return model if precision == "fp32" else AutocastModel(model, precision)
