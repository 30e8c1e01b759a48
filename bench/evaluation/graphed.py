"""PGD on static buffers, one runner per batch shape, captured as a CUDA graph on CUDA and replayed.

On a GPU at batch 128 an attack step is hundreds of small kernels, launched one by one from Python. A
``StaticPGD`` keeps static buffers for one batch shape (clean images, start point, labels, budget and step as
tensors: 0-dim for one number, (B, 1, ..., 1) per sample; the tensors the loss reads, such as the clean
logits) and an output buffer. Its body is ``pgd_steps`` of ``bench.evaluation.attacks`` on those buffers: the
K steps and the final projection, the very ops of eager ``pgd``. On CUDA the body is warmed up on a side
stream, captured once with ``torch.cuda.graph`` and replayed for every batch of that shape. On any other
device the body runs on the buffers without capture; that is how the tests prove on a CPU that the static
path equals eager ``pgd`` bit for bit.

The random start is drawn eagerly, outside the graph, from the caller's generator and copied in, so the draws
are those of eager ``pgd``. A call returns a clone of the output buffer, which the next batch overwrites.

A capture fixes what the body reads: the model's parameters and buffers (the optimiser and ``FoldedNet``
update them in place, so a replay sees the current weights) and the tensors the loss reads. Whoever replaces
such tensors clears the cache (the training loop at every epoch start). If a capture fails (an op that cannot
be captured, a host synchronisation in a loss), one line is logged and ``PGDGraphs`` runs eager PGD from then
on.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Hashable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from bench.evaluation.attacks import Budget, LossFn, eval_mode, pgd_steps, random_start

#: eager runs of the body on a side stream before the capture (cuDNN and cuBLAS set themselves up there)
WARMUP_RUNS = 3
Log = Callable[[str], None]


@dataclass
class PGDBatch:
    """One batch's inputs to the PGD steps: clean images, labels, start point, budget, step, what the loss reads."""

    x: Tensor
    y: Tensor
    start: Tensor
    eps: Budget
    step_size: Budget
    reads: dict[str, Tensor]


def budget_kind(value: Budget) -> Hashable:
    """``number`` for one budget for the batch, else the tensor's shape and dtype."""
    return (tuple(value.shape), value.dtype) if isinstance(value, Tensor) else "number"


def budget_buffer(value: Budget, like: Tensor) -> Tensor:
    """A static buffer for a budget: a 0-dim tensor of ``like``'s dtype for a number, else one like the tensor."""
    if isinstance(value, Tensor):
        return torch.empty_like(value)
    return torch.empty((), dtype=like.dtype, device=like.device)


def put(buffer: Tensor, value: Budget) -> None:
    """Copy ``value`` (a tensor or a number) into ``buffer``."""
    if isinstance(value, Tensor):
        buffer.copy_(value)
    else:
        buffer.fill_(value)


class StaticPGD:
    """The PGD steps on static buffers for one batch shape; on CUDA captured once and replayed."""

    def __init__(self, model: nn.Module, loss_fn: Callable[..., Tensor], steps: int, batch: PGDBatch):
        self.model, self.steps = model, steps
        self.x, self.y, self.start = (torch.empty_like(t) for t in (batch.x, batch.y, batch.start))
        self.eps, self.step_size = budget_buffer(batch.eps, batch.x), budget_buffer(batch.step_size, batch.x)
        self.reads = {name: torch.empty_like(t) for name, t in batch.reads.items()}
        self.loss_fn: LossFn = functools.partial(loss_fn, **self.reads)
        self.out: Tensor | None = None
        self.graph: torch.cuda.CUDAGraph | None = None

    def load(self, batch: PGDBatch) -> None:
        """Copy one batch into the static buffers."""
        with torch.no_grad():
            for buffer, value in ((self.x, batch.x), (self.y, batch.y), (self.start, batch.start),
                                  (self.eps, batch.eps), (self.step_size, batch.step_size)):
                put(buffer, value)
            for name, value in batch.reads.items():
                self.reads[name].copy_(value)

    def body(self) -> Tensor:
        """The K steps and the final projection on the buffers, in eval mode."""
        with eval_mode(self.model), torch.enable_grad():
            return pgd_steps(self.model, self.start, self.x, self.y, eps=self.eps, step_size=self.step_size,
                             steps=self.steps, loss_fn=self.loss_fn)

    def capture(self) -> None:
        """Warm the body up on a side stream, then capture it there; its result becomes the output buffer."""
        current = torch.cuda.current_stream(self.x.device)
        side = torch.cuda.Stream(self.x.device)
        side.wait_stream(current)
        with torch.cuda.stream(side):
            for _ in range(WARMUP_RUNS):
                self.body()
        current.wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        # the outer context restores the current stream when a failed capture leaves torch.cuda.graph early
        with torch.cuda.stream(current), torch.cuda.graph(graph, stream=side):
            self.out = self.body()
        self.graph = graph

    def run(self) -> Tensor:
        """The examples for the loaded batch: a replay (or, uncaptured, the body into the output buffer), cloned."""
        if self.graph is not None:
            self.graph.replay()
        elif self.out is None:
            self.out = self.body()  # the first result becomes the buffer, in the memory layout of eager pgd's
        else:
            self.out.copy_(self.body())
        return self.out.clone()


def runner_key(model: nn.Module, loss_fn: Callable[..., Tensor], steps: int, batch: PGDBatch) -> Hashable:
    """What a runner is captured for: model, loss, steps, batch shape, memory layout and dtype, budget kinds and
    the shapes of what the loss reads."""
    reads = tuple((name, t.shape, t.dtype) for name, t in sorted(batch.reads.items()))
    return (model, loss_fn, steps, batch.x.shape, batch.x.stride(), batch.start.stride(), batch.x.dtype,
            budget_kind(batch.eps), budget_kind(batch.step_size), reads)


def first_line(err: BaseException) -> str:
    """The first line of an error's message (its type when it has none)."""
    lines = str(err).strip().splitlines()
    return lines[0] if lines else type(err).__name__


class PGDGraphs:
    """Static PGD runners, one per ``runner_key``; a last partial batch gets a runner of its own, captured once.

    ``clear`` drops every runner (call it when the model or a tensor the loss reads may have been replaced);
    after a failed capture every call runs eagerly.
    """

    def __init__(self, log: Log):
        self.log = log
        self.runners: dict[Hashable, StaticPGD] = {}
        self.eager = False

    def clear(self) -> None:
        self.runners.clear()

    def pgd(
        self, model: nn.Module, x: Tensor, y: Tensor, *, eps: Budget, step_size: Budget, steps: int,
        loss_fn: Callable[..., Tensor], start: str = "uniform", generator: torch.Generator | None = None,
        start_eps: Budget | None = None, reads: dict[str, Tensor] | None = None,
    ) -> Tensor:
        """Eager ``pgd``'s examples (eval mode) through the runner of this batch's shape.

        ``loss_fn(logits, y, **reads)``: the same object for every batch (it is part of the runner's key);
        ``reads`` are the tensors it reads that change per batch, e.g. ``{"clean_logits": ...}``.
        """
        x = x.detach()
        first = random_start(x, eps if start_eps is None else start_eps, start, generator)
        batch = PGDBatch(x, y, first, eps, step_size, dict(reads or {}))
        runner = None if self.eager else self.runner(model, loss_fn, steps, batch)
        if runner is None:
            return eager_steps(model, loss_fn, steps, batch)
        return runner.run()

    def runner(self, model: nn.Module, loss_fn: Callable[..., Tensor], steps: int, batch: PGDBatch
               ) -> StaticPGD | None:
        """This batch's runner with the batch loaded; a new one is captured on CUDA (None: the capture failed)."""
        key = runner_key(model, loss_fn, steps, batch)
        runner = self.runners.get(key)
        if runner is not None:
            runner.load(batch)
            return runner
        runner = StaticPGD(model, loss_fn, steps, batch)
        runner.load(batch)
        if batch.x.device.type == "cuda":
            try:
                runner.capture()
            except RuntimeError as err:
                self.log(f"cuda_graph: capturing PGD failed ({first_line(err)}); PGD runs eagerly from here on")
                self.eager = True
                self.runners.clear()
                return None
        self.runners[key] = runner
        return runner


def eager_steps(model: nn.Module, loss_fn: Callable[..., Tensor], steps: int, batch: PGDBatch) -> Tensor:
    """The PGD steps of ``batch`` run eagerly: what ``pgd`` does after its random start."""
    with eval_mode(model), torch.enable_grad():
        return pgd_steps(model, batch.start, batch.x, batch.y, eps=batch.eps, step_size=batch.step_size,
                         steps=steps, loss_fn=functools.partial(loss_fn, **batch.reads))
