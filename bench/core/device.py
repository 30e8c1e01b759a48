"""The ``--device`` option: ``auto``, ``cpu``, ``cuda`` or ``cuda:N`` as a torch device, checked."""

from __future__ import annotations

import torch

from bench.core.errors import BenchError
from bench.core.precision import default_device_type


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA when available, else the CPU."""
    if name == "auto":
        return torch.device(default_device_type())
    try:
        device = torch.device(name)
    except RuntimeError:
        raise BenchError(f"unknown device {name!r}; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise BenchError(f"device {name!r} is not available here; use --device cpu or auto")
    return device
