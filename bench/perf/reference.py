"""A training loop written the way the published REAT code is, kept only as `bench perf`'s baseline.

torchvision DataLoader with per-image transforms, fp32 NCHW, the attack's class-weighted CE through
``nn.CrossEntropyLoss(weight=...)`` with the weights computed in NumPy, a Python loop over the tail anchors
for TAIL, and the adversarial examples' predicted labels counted one ``.item()`` at a time. It covers the
methods whose loop that code is: pgd-at (CE / CE), rbl (RBL / BSL), tail (CE / BSL + TAIL) and reat
(RBL / BSL + TAIL), official variants.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from bench.core.errors import InputError
from bench.models import Net
from methods.tail_loss import first_tail_class

#: method -> (RBL-weighted attack, outer loss: "ce", "bsl" or "bsl+tail")
REFERENCE_METHODS = {"pgd-at": (False, "ce"), "rbl": (True, "bsl"), "tail": (False, "bsl+tail"),
                     "reat": (True, "bsl+tail")}


class PerImageDataset(Dataset):
    """uint8 images through torchvision transforms one image at a time, as the papers' scripts load them."""

    def __init__(self, images: Tensor, labels: Tensor, augment: str):
        from torchvision import transforms

        self.images, self.labels = images.cpu(), labels.cpu()
        steps = [transforms.ToPILImage()]
        if augment == "crop-flip":
            steps += [transforms.RandomCrop(images.shape[-1], padding=4), transforms.RandomHorizontalFlip()]
        self.transform = transforms.Compose([*steps, transforms.ToTensor()])

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor]:
        return self.transform(self.images[i]), self.labels[i]


def reference_loader(images: Tensor, labels: Tensor, augment: str, batch_size: int) -> DataLoader:
    return DataLoader(PerImageDataset(images, labels, augment), batch_size=batch_size, shuffle=False, num_workers=0)


def rbl_weights(class_counts: list[int], ae_counts: list[int]) -> np.ndarray:
    """Effective-number class weights in float32 NumPy, as the official code computes them."""
    n = np.asarray(class_counts, dtype=np.float32)
    beta = (n - 1.0) / n
    effective = (1.0 - np.power(beta, np.asarray(ae_counts, dtype=np.float32))) / (1.0 - beta)
    v = 1.0 / (effective + 1e-5)
    return (v / v.sum() * len(n)).astype(np.float32)


def tail_per_anchor_loop(features: Tensor, y: Tensor, class_counts: Tensor) -> Tensor:
    """Official TAIL as the official code's loop over the batch's tail anchors."""
    batch, dims = features.shape
    num_classes = len(class_counts)
    weights = (class_counts.sum() / class_counts).sqrt()
    log_q = F.log_softmax(features, dim=1)
    terms = []
    for b in range(batch):
        if int(y[b]) < first_tail_class(num_classes):
            continue
        p = log_q[b].detach().exp()
        kbar = (p * (log_q[b].detach() - log_q)).sum() / (batch * dims)
        sign = torch.where(y == y[b], -1.0, 1.0)
        terms.append(kbar * (sign * (weights[y[b]] + weights[y])).sum() / batch)
    return torch.stack(terms).mean() if terms else features.sum() * 0


@dataclass
class ReferenceLoop:
    """One epoch's state of the reference loop: model, optimiser and the per-class AE counters."""

    net: Net
    optimizer: torch.optim.SGD
    method: str
    class_counts: list[int]
    eps: float
    step_size: float
    steps: int
    ae_counts: list[int] = field(default_factory=list)
    pred_counts: list[int] = field(default_factory=list)
    wrong_counts: list[int] = field(default_factory=list)
    clean_correct: int = 0

    def __post_init__(self) -> None:
        if self.method not in REFERENCE_METHODS:
            raise InputError(f"the reference loop covers {', '.join(REFERENCE_METHODS)}; got {self.method!r}")
        num_classes = len(self.class_counts)
        self.ae_counts = self.ae_counts or list(self.class_counts)
        self.pred_counts = [0] * num_classes
        self.wrong_counts = [0] * num_classes

    def attack(self, x: Tensor, y: Tensor, generator: torch.Generator | None) -> Tensor:
        weighted, _ = REFERENCE_METHODS[self.method]
        weight = torch.from_numpy(rbl_weights(self.class_counts, self.ae_counts)).to(x.device) if weighted else None
        criterion = nn.CrossEntropyLoss(weight=weight)
        noise = torch.rand(x.shape, generator=generator, device=x.device) * 2 - 1
        x_adv = x.detach() + self.eps * noise
        for _ in range(self.steps):
            x_adv.requires_grad_()
            loss = criterion(self.net(x_adv), y)
            grad = torch.autograd.grad(loss, [x_adv])[0]
            x_adv = x_adv.detach() + self.step_size * torch.sign(grad.detach())
            x_adv = torch.min(torch.max(x_adv, x - self.eps), x + self.eps)
            x_adv = torch.clamp(x_adv, 0.0, 1.0)
        return x_adv

    def outer_loss(self, features: Tensor, logits: Tensor, y: Tensor) -> Tensor:
        _, outer = REFERENCE_METHODS[self.method]
        if outer == "ce":
            return F.cross_entropy(logits, y)
        counts = torch.tensor(self.class_counts, dtype=torch.float32, device=logits.device)
        loss = F.cross_entropy(logits + counts.log(), y)
        if outer == "bsl+tail":
            loss = loss + tail_per_anchor_loop(features, y, counts)
        return loss

    def step(self, x: Tensor, y: Tensor, generator: torch.Generator | None = None) -> float:
        """Attack (eval mode), clean logging forward, update (train mode) and the per-sample counting."""
        self.net.eval()
        with torch.no_grad():
            clean_logits = self.net(x)
        self.clean_correct += (clean_logits.argmax(1) == y).sum().item()
        x_adv = self.attack(x, y, generator)
        self.net.train()
        features, logits = self.net.forward_features(x_adv)
        loss = self.outer_loss(features, logits, y)
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        pred = logits.argmax(1)
        for i in range(len(pred)):
            self.pred_counts[pred[i].item()] += 1
            if pred[i].item() != y[i].item():
                self.wrong_counts[y[i].item()] += 1
        return loss.item()

    def end_epoch(self) -> None:
        self.ae_counts, self.pred_counts = self.pred_counts, [0] * len(self.class_counts)
