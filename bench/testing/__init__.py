"""Checks for plugin authors: ``check_method(MyMethod, tmp_path)`` runs the invariants ltbench's own methods pass.

1. one training step as the core runs it (attack with ``attack_loss`` from ``attack_start``, ``train_loss`` on
   the adversarial and, if asked, clean forward) gives a finite scalar loss and finite, non-zero gradients;
2. ``state_dict`` survives ``torch.save`` / ``torch.load(weights_only=True)`` into a fresh instance;
3. a two-epoch run killed after the first epoch and resumed ends with the same losses, accuracies and weights
   as the run trained straight through.

Everything runs on the CPU on random 3x8x8 / 3x16x16 images in seconds. Each check raises AssertionError
naming what broke.

May import: bench.core, bench.data, bench.models, methods, bench.evaluation, bench.training, bench.runs.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from torch import nn

from bench.core import store
from bench.core.progress import Progress
from bench.data.images import ImageData
from bench.data.longtail import LongTailData, long_tail_data
from bench.evaluation.attacks import pgd
from bench.evaluation.suite import epoch_validation
from bench.models.net import Net
from bench.training.config import RunConfig, build_config
from bench.training.loop import train
from methods.base import REGISTRY, Method

COUNTS = [40, 20, 10, 5, 2]
EPS, STEP = 8 / 255, 2 / 255


def check_method(cls: type[Method], tmp_path: str | Path, dataset: str = "cifar10") -> None:
    """Run the three invariants on ``cls`` (with its default parameters for ``dataset``); ``tmp_path``: an
    empty folder for the resume check's run folders."""
    training_step(cls, dataset)
    state_round_trip(cls, dataset)
    resume_after_kill(cls, Path(tmp_path), dataset)


def _make(cls: type[Method], dataset: str, counts: list[int] = COUNTS) -> Method:
    return cls(cls.resolve_params({}, dataset), counts)


def _tiny_net(method: Method) -> Net:
    torch.manual_seed(0)
    backbone = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                             nn.AdaptiveAvgPool2d(1), nn.Flatten())
    return Net(backbone, method.build_head(8))


def training_step(cls: type[Method], dataset: str = "cifar10") -> None:
    """One batch: the attack stays in the eps-ball, the loss is a finite scalar, the gradients finite and not all 0."""
    method = _make(cls, dataset)
    method.begin_epoch(0, 2)
    net = _tiny_net(method)
    torch.manual_seed(1)
    x, y = torch.rand(10, 3, 8, 8), torch.tensor([0, 1, 2, 3, 4, 4, 0, 0, 1, 4])
    net.eval()
    with torch.no_grad():
        clean_logits = net(x)
    x_adv = pgd(net, x, y, eps=EPS, step_size=STEP, steps=2, start=method.attack_start,
                loss_fn=lambda z, t: method.attack_loss(z, t, clean_logits), generator=torch.Generator().manual_seed(0))
    assert (x_adv - x).abs().max() <= EPS + 1e-6, f"{cls.__name__}: the training attack left the eps-ball"
    net.train()
    out_clean = net.forward_features(x) if method.needs_clean_output else None
    loss = method.train_loss(net.forward_features(x_adv), y, out_clean)
    assert loss.ndim == 0 and torch.isfinite(loss), f"{cls.__name__}.train_loss is not a finite scalar: {loss}"
    loss.backward()
    grads = [p.grad for p in net.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads), f"{cls.__name__}: gradients missing or not finite"
    assert any(g.abs().sum() > 0 for g in grads), f"{cls.__name__}: every gradient is zero"
    method.end_epoch(torch.bincount(clean_logits.argmax(1), minlength=len(COUNTS)))
    logits = method.predict(clean_logits)
    assert logits.shape == clean_logits.shape and torch.isfinite(logits).all(), f"{cls.__name__}.predict is broken"


def state_round_trip(cls: type[Method], dataset: str = "cifar10") -> None:
    """``state_dict`` after an epoch, saved and loaded as checkpoints are, gives a fresh instance the same state."""
    method = _make(cls, dataset)
    method.begin_epoch(0, 2)
    method.end_epoch(torch.tensor([5, 1, 0, 3, 1]))
    buffer = io.BytesIO()
    torch.save(method.state_dict(), buffer)
    buffer.seek(0)
    restored = _make(cls, dataset)
    restored.load_state_dict(torch.load(buffer, weights_only=True))
    before, after = method.state_dict(), restored.state_dict()
    assert before.keys() == after.keys(), f"{cls.__name__}: state keys {sorted(before)} came back as {sorted(after)}"
    for key, value in before.items():
        same = torch.equal(torch.as_tensor(after[key]), torch.as_tensor(value))
        assert same, f"{cls.__name__}: state {key!r} differs after the round trip"


class _Quiet(Progress):
    def log(self, message: str) -> None:
        pass


class _KillAfterFirstEpoch(Progress):
    """The training core logs once per epoch, after the checkpoint: a kill right there."""

    def log(self, message: str) -> None:
        raise KeyboardInterrupt


@contextmanager
def _registered(cls: type[Method]) -> Iterator[str]:
    """The registry name of ``cls``; a class not registered yet is registered for the duration."""
    for name, registered in REGISTRY.items():
        if registered is cls:
            yield name
            return
    name, original_name = f"check-{cls.__name__.lower()}", cls.name
    REGISTRY[name], cls.name = cls, name
    try:
        yield name
    finally:
        del REGISTRY[name]
        cls.name = original_name


def _random_data(dataset: str) -> LongTailData:
    g = torch.Generator().manual_seed(0)
    y_train, y_test = torch.arange(10).repeat_interleave(8), torch.arange(10).repeat(2)
    images = ImageData(dataset, tuple(f"class{c}" for c in range(10)),
                       torch.randint(0, 256, (80, 3, 16, 16), dtype=torch.uint8, generator=g), y_train,
                       torch.randint(0, 256, (20, 3, 16, 16), dtype=torch.uint8, generator=g), y_test)
    return long_tail_data(images, 4)


def _train(cfg: RunConfig, data: LongTailData, run_dir: Path, progress: Progress) -> None:
    validate = epoch_validation(data, n=cfg.epoch_eval_n, eps=cfg.eps, step_size=cfg.step_size, seed=cfg.seed,
                                progress=progress)
    train(cfg, data, run_dir, torch.device("cpu"), progress, validate)


def resume_after_kill(cls: type[Method], tmp_path: Path, dataset: str = "cifar10") -> None:
    """Two epochs straight vs. killed after the first and resumed: same metrics and final weights."""
    data = _random_data(dataset)
    with _registered(cls) as name:
        cfg = build_config(method=name, dataset=dataset, ur=4, arch="cnn-small", preset="smoke",
                           overrides={"epochs": 2, "steps": 1, "batch_size": 16, "epoch_eval_n": 10,
                                      "augment": "none", "precision": "fp32"})
        straight, killed = tmp_path / "straight", tmp_path / "killed"
        _train(cfg, data, straight, _Quiet(False))
        try:
            _train(cfg, data, killed, _KillAfterFirstEpoch(False))
        except KeyboardInterrupt:
            pass
        _train(cfg, data, killed, _Quiet(False))
    runs = {}
    for run_dir in (straight, killed):
        lines = [json.loads(x) for x in (run_dir / store.METRICS_FILE).read_text().splitlines()]
        runs[run_dir.name] = [{k: v for k, v in line.items() if k != "seconds"} for line in lines]
    assert runs["straight"] == runs["killed"], f"{cls.__name__}: a resumed run's metrics differ from a straight one"
    wa, wb = (store.load_checkpoint(d / store.CKPT_DIR / "last.pt")["model"] for d in (straight, killed))
    assert all(torch.equal(wa[k], wb[k]) for k in wa), f"{cls.__name__}: a resumed run's weights differ"
    ma, mb = (store.load_checkpoint(d / store.CKPT_DIR / "last.pt")["method"] for d in (straight, killed))
    assert ma.keys() == mb.keys() and all(torch.equal(torch.as_tensor(ma[k]), torch.as_tensor(mb[k])) for k in ma), \
        f"{cls.__name__}: a resumed run's method state differs"
