"""Speed benchmarks reported as ratios measured in one process (machines are noisy; ratios less so)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from bench.data import LongTailData, train_batches


@dataclass
class Comparison:
    name: str
    baseline: str
    baseline_seconds: float
    ltbench: str
    ltbench_seconds: float

    @property
    def speedup(self) -> float:
        return self.baseline_seconds / self.ltbench_seconds


def best_of(fn: Callable[[], object], repeats: int) -> float:
    """Fastest wall time of ``repeats`` calls (after one warm-up call)."""
    fn()
    times = []
    for _ in range(repeats):
        began = time.perf_counter()
        fn()
        times.append(time.perf_counter() - began)
    return min(times)


class _CropFlipDataset(Dataset):
    """The per-sample pipeline of the papers' scripts: torchvision transforms on one image at a time."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor):
        from torchvision import transforms

        self.images, self.labels = images, labels
        self.transform = transforms.Compose([
            transforms.ToPILImage(), transforms.RandomCrop(32, padding=4), transforms.RandomHorizontalFlip(),
            transforms.ToTensor(),
        ])

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.transform(self.images[i]), self.labels[i]


def compare_data_pipeline(n_images: int, batch_size: int, repeats: int) -> Comparison:
    """One epoch of crop+flip batches: torchvision DataLoader vs ltbench's on-device vectorised batching."""
    gen = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n_images, 3, 32, 32), dtype=torch.uint8, generator=gen)
    labels = torch.randint(0, 10, (n_images,), generator=gen)
    data = LongTailData("synthetic", tuple(map(str, range(10))), 1.0, images, labels, images[:1], labels[:1])
    loader = DataLoader(_CropFlipDataset(images, labels), batch_size=batch_size, shuffle=True, num_workers=0)

    def loader_epoch() -> None:
        for _ in loader:
            pass

    def ltbench_epoch() -> None:
        for _ in train_batches(data, batch_size, torch.Generator().manual_seed(0), "crop-flip"):
            pass

    return Comparison(f"data pipeline, {n_images} CIFAR-size images", "torchvision DataLoader + transforms",
                      best_of(loader_epoch, repeats), "on-device uint8 + vectorised crop/flip",
                      best_of(ltbench_epoch, repeats))


def tail_per_anchor_loop(features: torch.Tensor, y: torch.Tensor, class_counts: torch.Tensor) -> torch.Tensor:
    """Official TAIL written as the official code's loop over tail anchors (baseline for the benchmark)."""
    batch, dims = features.shape
    num_classes = len(class_counts)
    weights = (class_counts.sum() / class_counts).sqrt()
    log_q = F.log_softmax(features, dim=1)
    terms = []
    for b in range(batch):
        if int(y[b]) < 2 * (num_classes // 3) + 1:
            continue
        p = log_q[b].detach().exp()
        kbar = (p * (log_q[b].detach() - log_q)).sum() / (batch * dims)
        sign = torch.where(y == y[b], -1.0, 1.0)
        terms.append(kbar * (sign * (weights[y[b]] + weights[y])).sum() / batch)
    return torch.stack(terms).mean() if terms else features.sum() * 0


def compare_tail(batch: int, dims: int, repeats: int) -> Comparison:
    """TAIL loss + backward on one batch: per-anchor Python loop vs the vectorised implementation."""
    from methods.tail_loss import tail_official

    gen = torch.Generator().manual_seed(0)
    counts = torch.tensor([5000, 2997, 1796, 1077, 645, 387, 232, 139, 83, 50], dtype=torch.float32)
    y = torch.multinomial(counts, batch, replacement=True, generator=gen)
    y[: batch // 4] = 9  # enough tail anchors to matter
    features = torch.randn(batch, dims, generator=gen, requires_grad=True)

    def run(fn: Callable[..., torch.Tensor]) -> Callable[[], None]:
        return lambda: fn(features, y, counts).backward()

    return Comparison(f"TAIL loss + backward, batch {batch}, {dims}-d features", "per-anchor Python loop",
                      best_of(run(tail_per_anchor_loop), repeats), "vectorised over the batch",
                      best_of(run(tail_official), repeats))


def compare_augmentation(batch: int, arch: str, steps: int, repeats: int) -> Comparison:
    """RandAugment(2, 8) per image + crop/flip of one CIFAR-size batch vs the PGD attack it feeds."""
    from bench.attacks import pgd
    from bench.data import augment
    from bench.models import build_model

    gen = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (batch, 3, 32, 32), dtype=torch.uint8, generator=gen)
    y = torch.randint(0, 10, (batch,), generator=gen)
    net = build_model(arch, 3, lambda d: torch.nn.Linear(d, 10))
    x = images.float() / 255

    def attack() -> None:
        pgd(net, x, y, eps=8 / 255, step_size=2 / 255, steps=steps, generator=torch.Generator().manual_seed(0))

    def randaugment() -> None:
        augment(images, "ra-crop-flip", torch.Generator().manual_seed(0))

    return Comparison(f"augmentation vs the attack it feeds, batch {batch} CIFAR-size ({arch})",
                      f"PGD-{steps} training attack", best_of(attack, repeats),
                      "RandAugment(2, 8) per image + crop/flip", best_of(randaugment, repeats))


def run_benchmarks(quick: bool = False) -> list[Comparison]:
    """All comparisons; ``quick`` shrinks them (for tests)."""
    repeats = 1 if quick else 3
    return [
        compare_data_pipeline(512 if quick else 10_000, 128, repeats),
        compare_tail(64 if quick else 128, 64 if quick else 512, repeats),
        compare_augmentation(32 if quick else 128, "cnn-small" if quick else "resnet18", 2 if quick else 10,
                             repeats),
    ]
