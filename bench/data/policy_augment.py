"""RandAugment and AutoAugment (CIFAR-10 policy) on uint8 image batches, ops drawn per image from a generator.

torchvision's v2 transforms draw one op for a whole batch tensor from the global RNG. Here every image gets
its own draw from the epoch's generator (so a resumed run repeats it exactly), and images that drew the same
op and magnitude are transformed together by torchvision's own op implementation (uint8 tensor kernels,
nearest interpolation, black fill, as torchvision's defaults). Pinned torchvision: the op tables and the op
application are read from its RandAugment / AutoAugment classes rather than copied.
"""

from __future__ import annotations

from collections import defaultdict
from functools import lru_cache

import torch
from torch import Tensor
from torchvision.transforms import v2

#: AT-BSL's RandAugment(num_ops=2, magnitude=8) with torchvision's 31 magnitude bins
RA_NUM_OPS, RA_MAGNITUDE, RA_BINS = 2, 8, 31
#: AutoAugment's policies index 10 magnitude bins
AA_BINS = 10
POLICIES = ("ra", "aua")

_RANDAUGMENT = v2.RandAugment(num_ops=RA_NUM_OPS, magnitude=RA_MAGNITUDE, num_magnitude_bins=RA_BINS)
_AUTOAUGMENT = v2.AutoAugment(v2.AutoAugmentPolicy.CIFAR10)

#: one image's ops: (op name, signed magnitude) per step; "Identity" leaves the image as it is
Plan = tuple[tuple[str, float], ...]


@lru_cache(maxsize=8)
def _magnitudes(policy: str, height: int, width: int) -> dict[str, tuple[list[float] | None, bool]]:
    """Each op's magnitude bins (None for ops without a magnitude) and whether its sign is random."""
    space = _RANDAUGMENT._AUGMENTATION_SPACE if policy == "ra" else _AUTOAUGMENT._AUGMENTATION_SPACE
    bins = RA_BINS if policy == "ra" else AA_BINS
    table = {}
    for name, (fn, signed) in space.items():
        values = fn(bins, height, width)
        table[name] = (None if values is None else [float(v) for v in values], signed)
    return table


def _signed(table: dict[str, tuple[list[float] | None, bool]], name: str, level: int, negate: bool) -> float:
    values, signed = table[name]
    if values is None:
        return 0.0
    return -values[level] if signed and negate else values[level]


def draw_plans(policy: str, n: int, height: int, width: int, generator: torch.Generator) -> list[Plan]:
    """The ops of ``n`` images: RandAugment (2 uniform ops, magnitude 8, random sign) or AutoAugment
    (one of the 25 CIFAR-10 sub-policies, each of its two ops applied with its probability)."""
    table = _magnitudes(policy, height, width)
    dev = generator.device
    if policy == "ra":
        names = list(table)
        ops = torch.randint(len(names), (n, RA_NUM_OPS), generator=generator, device=dev).tolist()
        negate = (torch.rand((n, RA_NUM_OPS), generator=generator, device=dev) <= 0.5).tolist()
        return [tuple((names[o], _signed(table, names[o], RA_MAGNITUDE, s)) for o, s in zip(row, signs, strict=True))
                for row, signs in zip(ops, negate, strict=True)]
    if policy == "aua":
        policies = _AUTOAUGMENT._policies
        chosen = torch.randint(len(policies), (n,), generator=generator, device=dev).tolist()
        apply = torch.rand((n, 2), generator=generator, device=dev).tolist()
        negate = (torch.rand((n, 2), generator=generator, device=dev) <= 0.5).tolist()
        plans = []
        for i, p in enumerate(chosen):
            plans.append(tuple(
                (name, _signed(table, name, level or 0, negate[i][k])) if apply[i][k] <= prob else ("Identity", 0.0)
                for k, (name, prob, level) in enumerate(policies[p])
            ))
        return plans
    raise ValueError(f"unknown augmentation policy {policy!r}; choose one of {POLICIES}")


def apply_plans(x: Tensor, plans: list[Plan]) -> Tensor:
    """Apply each image's ops in order; images with the same op and magnitude at a step go together."""
    out = x.clone()
    for step in range(len(plans[0]) if plans else 0):
        groups: dict[tuple[str, float], list[int]] = defaultdict(list)
        for i, plan in enumerate(plans):
            groups[plan[step]].append(i)
        for (name, magnitude), members in groups.items():
            if name == "Identity":
                continue
            idx = torch.tensor(members, device=x.device)
            out[idx] = _RANDAUGMENT._apply_image_or_video_transform(
                out[idx], name, magnitude, interpolation=_RANDAUGMENT.interpolation, fill=_RANDAUGMENT._fill)
    return out


def policy_augment(x: Tensor, policy: str, generator: torch.Generator) -> Tensor:
    """RandAugment ("ra") or AutoAugment CIFAR-10 ("aua") of a uint8 NCHW batch, drawn per image."""
    return apply_plans(x, draw_plans(policy, x.shape[0], x.shape[2], x.shape[3], generator))
