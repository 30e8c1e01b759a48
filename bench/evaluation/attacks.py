"""L-inf attacks with pluggable per-sample losses: PGD (random start, projection, [0,1] clamp) and FGSM.

The model is put in eval mode while attacking (or, with ``train_bn``, in train mode with BatchNorm's running
statistics frozen) and its previous mode is restored afterwards. The training attack may give each sample its
own budget: ``eps`` and ``step_size`` are then (B, 1, ..., 1) tensors. Only input gradients are taken
(``torch.autograd.grad``), so parameter gradients are untouched.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import Tensor, nn

#: (logits, labels) -> per-sample loss to maximise
LossFn = Callable[[Tensor, Tensor], Tensor]
STARTS = ("uniform", "normal", "uniform-positive", "none")
#: a budget or step size: one number for the batch, or a (B, 1, ..., 1) tensor with one per sample
Budget = float | Tensor


def ce_loss(logits: Tensor, y: Tensor) -> Tensor:
    """Per-sample cross-entropy."""
    return F.cross_entropy(logits, y, reduction="none")


def cw_loss(logits: Tensor, y: Tensor, kappa: float = 50.0) -> Tensor:
    """CW margin loss to maximise: -max(z_y - max_{k != y} z_k + kappa, 0)."""
    true = logits.gather(1, y[:, None]).squeeze(1)
    other = logits.masked_fill(F.one_hot(y, logits.shape[1]).bool(), float("-inf")).amax(1)
    return -torch.clamp(true - other + kappa, min=0)


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Temporarily put ``model`` in eval mode."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


@contextmanager
def batch_stats_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Temporarily put ``model`` in train mode with BatchNorm on batch statistics and its running statistics
    frozen (``track_running_stats=False`` while in train mode)."""
    was_training = model.training
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    tracked = [m.track_running_stats for m in norms]
    model.train()
    for m in norms:
        m.track_running_stats = False
    try:
        yield model
    finally:
        for m, t in zip(norms, tracked, strict=True):
            m.track_running_stats = t
        model.train(was_training)


def random_start(x: Tensor, eps: Budget, kind: str, generator: torch.Generator | None = None) -> Tensor:
    """The attack's starting point (not clipped, as in the official REAT code)."""
    if kind == "uniform":
        noise = torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype) * 2 - 1
        return x + eps * noise
    if kind == "normal":
        return x + 0.001 * torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    if kind == "uniform-positive":
        return x + eps * torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    if kind == "none":
        return x.clone()
    raise ValueError(f"unknown random start {kind!r}; choose one of {STARTS}")


def project(x_adv: Tensor, x: Tensor, eps: Budget) -> Tensor:
    """Clip to the L-inf ball around ``x`` (of each sample's radius for a tensor ``eps``), then to [0, 1]."""
    return torch.min(torch.max(x_adv, x - eps), x + eps).clamp_(0.0, 1.0)


def pgd(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    *,
    eps: Budget,
    step_size: Budget,
    steps: int,
    loss_fn: LossFn = ce_loss,
    start: str = "uniform",
    generator: torch.Generator | None = None,
    start_eps: Budget | None = None,
    train_bn: bool = False,
) -> Tensor:
    """L-inf PGD maximising ``loss_fn`` summed over the batch; returns detached examples.

    ``start_eps`` is the random start's radius (default ``eps``); ``train_bn`` crafts in ``batch_stats_mode``.
    """
    x = x.detach()
    mode = batch_stats_mode(model) if train_bn else eval_mode(model)
    with mode, torch.enable_grad():
        x_adv = random_start(x, eps if start_eps is None else start_eps, start, generator)
        return pgd_steps(model, x_adv, x, y, eps=eps, step_size=step_size, steps=steps, loss_fn=loss_fn)


def pgd_step(model: nn.Module, x_adv: Tensor, x: Tensor, y: Tensor, *, eps: Budget, step_size: Budget,
             loss_fn: LossFn) -> Tensor:
    """One ascent step from ``x_adv``: the sign of the input gradient of ``loss_fn`` summed over the batch, then
    the projection (gradients must be enabled)."""
    x_adv.requires_grad_(True)
    loss = loss_fn(model(x_adv), y).sum()
    (grad,) = torch.autograd.grad(loss, x_adv)
    return project(x_adv.detach() + step_size * grad.sign(), x, eps)


def pgd_steps(model: nn.Module, x_adv: Tensor, x: Tensor, y: Tensor, *, eps: Budget, step_size: Budget, steps: int,
              loss_fn: LossFn) -> Tensor:
    """``steps`` ascent steps from the start point ``x_adv`` and the final projection; the body that eager
    ``pgd`` and the static runners of ``bench.evaluation.graphed`` share (the caller sets the model's mode)."""
    for _ in range(steps):
        x_adv = pgd_step(model, x_adv, x, y, eps=eps, step_size=step_size, loss_fn=loss_fn)
    return project(x_adv.detach(), x, eps)


def fgsm(model: nn.Module, x: Tensor, y: Tensor, *, eps: float, loss_fn: LossFn = ce_loss) -> Tensor:
    """One signed-gradient step of size ``eps`` from the clean image."""
    return pgd(model, x, y, eps=eps, step_size=eps, steps=1, loss_fn=loss_fn, start="none")
