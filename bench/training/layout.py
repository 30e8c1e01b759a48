"""Memory layout and optimiser kernels of the training core (the fast paths; the math is unchanged).

Channels-last helps where oneDNN / cuDNN have channels-last convolution kernels; which architectures get
it was measured with `bench perf` (docs/performance.md).
"""

from __future__ import annotations

from typing import Any

import torch

#: architectures trained and attacked in channels-last memory format
CHANNELS_LAST_ARCHS = frozenset({"cnn-small", "resnet18", "preact-resnet18", "wrn-28-10", "wrn-34-10"})


def memory_format(arch: str) -> torch.memory_format:
    """Channels-last for the architectures where it was measured to help, else contiguous (NCHW)."""
    return torch.channels_last if arch in CHANNELS_LAST_ARCHS else torch.contiguous_format


def sgd_kernel(device: torch.device) -> dict[str, Any]:
    """SGD's single fused kernel over all parameters (CPU and CUDA), the for-each kernels elsewhere."""
    return {"fused": True} if device.type in ("cpu", "cuda") else {"foreach": True}
