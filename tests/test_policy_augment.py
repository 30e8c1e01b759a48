"""RandAugment / AutoAugment per image from the epoch generator: exact repeats, per-image draws, torchvision ops."""

from __future__ import annotations

from collections import Counter

import pytest
import torch
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

from bench.core.errors import InputError
from bench.data.augment import augment, train_batches
from bench.data.longtail import LongTailData
from bench.data.policy_augment import RA_MAGNITUDE, apply_plans, draw_plans
from bench.training.config import build_config


def images(n: int = 48, channels: int = 3, size: int = 32) -> torch.Tensor:
    gen = torch.Generator().manual_seed(5)
    return torch.randint(0, 256, (n, channels, size, size), dtype=torch.uint8, generator=gen)


@pytest.mark.parametrize("mode", ["ra-crop-flip", "aua-crop-flip"])
@pytest.mark.parametrize("channels", [1, 3])
def test_policy_modes_are_seeded_uint8_and_change_images(mode, channels):
    x = images(channels=channels)
    a = augment(x, mode, torch.Generator().manual_seed(3))
    b = augment(x, mode, torch.Generator().manual_seed(3))
    c = augment(x, mode, torch.Generator().manual_seed(4))
    assert a.dtype == torch.uint8 and a.shape == x.shape
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert not torch.equal(a, augment(x, "crop-flip", torch.Generator().manual_seed(3)))


def test_randaugment_draws_two_ops_per_image_with_magnitude_8():
    plans = draw_plans("ra", 2000, 32, 32, torch.Generator().manual_seed(0))
    assert all(len(p) == 2 for p in plans)
    counts = Counter(name for p in plans for name, _ in p)
    assert len(counts) == 14 and min(counts.values()) > 200  # 4000 draws over 14 ops, each about 286
    rotations = {m for p in plans for name, m in p if name == "Rotate"}
    bins = torch.linspace(0.0, 30.0, 31)
    assert rotations == {float(bins[RA_MAGNITUDE]), -float(bins[RA_MAGNITUDE])}  # 8 of 30 bins: 8 degrees


def test_autoaugment_draws_cifar10_subpolicies_per_image():
    plans = draw_plans("aua", 4000, 32, 32, torch.Generator().manual_seed(0))
    policies = v2.AutoAugment(v2.AutoAugmentPolicy.CIFAR10)._policies
    names = {tuple(name for name, _, _ in p) for p in policies}
    for plan in plans:
        assert any(all(op in ("Identity", want) for (op, _), want in zip(plan, pair, strict=True)) for pair in names)
    # ("Invert", 0.1), ("Contrast", 0.2, 6) is one of 25 sub-policies: Invert in about 0.4 % of the images
    inverts = sum(plan[0][0] == "Invert" for plan in plans)
    assert 2 <= inverts <= 40


def test_ops_differ_within_a_batch_and_grouping_equals_one_image_at_a_time():
    x = images(32)
    plans = draw_plans("ra", 32, 32, 32, torch.Generator().manual_seed(1))
    assert len({p[0] for p in plans}) > 5  # not one op for the whole batch
    together = apply_plans(x, plans)
    alone = torch.cat([apply_plans(x[i:i + 1], [p]) for i, p in enumerate(plans)])
    assert torch.equal(together, alone)


def test_an_op_is_torchvisions_kernel():
    x = images(4)
    got = apply_plans(x, [(("Rotate", 8.0), ("Solarize", 0.5))] * 4)
    want = TF.solarize(TF.rotate(x, 8.0, interpolation=v2.InterpolationMode.NEAREST), threshold=127.5)
    assert torch.equal(got, want)


def test_training_batches_repeat_exactly_for_the_same_epoch_generator():
    x, y = images(40), torch.arange(40) % 4
    data = LongTailData("synthetic", ("a", "b", "c", "d"), 1.0, x, y, x[:4], y[:4])
    first = [b for b, _ in train_batches(data, 16, torch.Generator().manual_seed(7), "ra-crop-flip")]
    again = [b for b, _ in train_batches(data, 16, torch.Generator().manual_seed(7), "ra-crop-flip")]
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    assert torch.equal(data.x_test, x[:4])  # test images are never touched


def test_config_accepts_the_modes_and_rejects_others():
    cfg = build_config(method="at-bsl", overrides={"augment": "ra-crop-flip"})
    assert cfg.augment == "ra-crop-flip"
    assert build_config(method="at-bsl", overrides={"augment": "aua-crop-flip"}).augment == "aua-crop-flip"
    with pytest.raises(InputError, match="augment must be one of"):
        build_config(method="at-bsl", overrides={"augment": "randaugment"})
