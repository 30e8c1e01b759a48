"""The training core: one loop for every method, checkpointed and resumable each epoch."""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from bench import store
from bench.attacks import pgd
from bench.config import RunConfig
from bench.data import LongTailData, stratified_first_n, train_batches
from bench.errors import BenchError
from bench.evaluate import EVAL_BATCH_SIZE, attack_params, run_attack
from bench.inference import InferenceModel
from bench.metrics import entropy
from bench.models import Net, build_model
from bench.progress import Progress
from methods import Method, get_method

EPOCH_SEED_STRIDE = 1_000_003


@dataclass
class Trainee:
    """What a run trains: the network, its method and the optimiser."""

    net: Net
    method: Method
    optimizer: torch.optim.SGD


def build_trainee(cfg: RunConfig, data: LongTailData, device: torch.device) -> Trainee:
    """Model, method and optimiser for ``cfg``, seeded by ``cfg.seed``."""
    torch.manual_seed(cfg.seed)
    method = get_method(cfg.method)(cfg.method_params, data.class_counts, device)
    net = build_model(cfg.arch, data.x_train.shape[1], method.build_head).to(device)
    optimizer = torch.optim.SGD(net.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    return Trainee(net, method, optimizer)


def lr_at(cfg: RunConfig, epoch: int) -> float:
    """Step schedule: lr x gamma after each milestone epoch."""
    return cfg.lr * cfg.lr_gamma ** sum(epoch >= m for m in cfg.milestones)


def epoch_generator(cfg: RunConfig, epoch: int, device: torch.device) -> torch.Generator:
    """Every random draw of an epoch comes from (seed, epoch), so a resumed run repeats it exactly."""
    seed = cfg.seed * EPOCH_SEED_STRIDE + epoch
    torch.manual_seed(seed)
    return torch.Generator(device=device).manual_seed(seed)


def test_accuracy(model: InferenceModel, data: LongTailData, cfg: RunConfig, progress: Progress) -> tuple[float, float]:
    """Clean and PGD-20 accuracy on the per-epoch test subset, through the inference path."""
    model.eval()
    idx = stratified_first_n(data.y_test, cfg.epoch_eval_n, data.num_classes)
    x, y = data.x_test[idx], data.y_test[idx]
    accuracies = []
    for key in ("clean", "pgd20"):
        params = attack_params(key, cfg.eps, cfg.step_size, data.num_classes, cfg.seed)
        preds = run_attack(model, key, params, x, y, seed=cfg.seed, batch_size=EVAL_BATCH_SIZE, progress=progress)
        accuracies.append((preds == y).float().mean().item())
    return accuracies[0], accuracies[1]


def train_epoch(
    cfg: RunConfig, t: Trainee, data: LongTailData, generator: torch.Generator, on_batch: Callable[[], None]
) -> dict[str, Any]:
    """One epoch of adversarial training; returns the epoch's training statistics."""
    net, method = t.net, t.method
    device = data.y_train.device
    hist = torch.zeros(data.num_classes, dtype=torch.long, device=device)
    loss_sum = torch.zeros((), device=device)
    clean_correct = torch.zeros((), dtype=torch.long, device=device)
    adv_correct = torch.zeros((), dtype=torch.long, device=device)
    steps = cfg.steps if method.attack_steps is None else method.attack_steps
    for batch, (x, y) in enumerate(train_batches(data, cfg.batch_size, generator, cfg.augment)):
        net.eval()
        with torch.no_grad():
            clean_logits = net(x)
        x_adv = x if steps == 0 else pgd(
            net, x, y, eps=cfg.eps, step_size=cfg.step_size, steps=steps,
            loss_fn=functools.partial(method.attack_loss, clean_logits=clean_logits),
            start=method.attack_start, generator=generator)
        net.train()
        out_adv = net.forward_features(x_adv)
        out_clean = net.forward_features(x) if method.needs_clean_output else None
        loss = method.train_loss(out_adv, y, out_clean)
        if not torch.isfinite(loss):
            raise BenchError(
                f"loss became {loss.item()} in batch {batch}; lower the learning rate (--set lr=...) "
                f"or the method's loss weights (--set {cfg.method}.PARAM=...)"
            )
        t.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        t.optimizer.step()
        with torch.no_grad():
            pred_adv = out_adv.logits.argmax(1)
            hist += torch.bincount(pred_adv, minlength=data.num_classes)
            adv_correct += (pred_adv == y).sum()
            clean_correct += (clean_logits.argmax(1) == y).sum()
            loss_sum += loss.detach() * y.numel()
        on_batch()
    n = data.y_train.numel()
    hist_list = hist.tolist()
    method.end_epoch(hist)
    return {
        "loss": loss_sum.item() / n,
        "train_clean_acc": clean_correct.item() / n,
        "train_adv_acc": adv_correct.item() / n,
        "ae_pred_hist": hist_list,
        "ae_pred_entropy": entropy(hist_list),
        "attack_steps": steps,
    }


def checkpoint_state(t: Trainee, epoch: int, history: list[dict[str, Any]], best: float) -> dict[str, Any]:
    return {
        "epoch": epoch,
        "model": t.net.state_dict(),
        "optimizer": t.optimizer.state_dict(),
        "method": t.method.state_dict(),
        "history": history,
        "best_pgd20": best,
    }


def train(cfg: RunConfig, data: LongTailData, run_dir: Path, device: torch.device, progress: Progress) -> Trainee:
    """Train ``cfg`` into ``run_dir``, resuming from ``ckpt/last.pt`` if a previous attempt left one."""
    t = build_trainee(cfg, data, device)
    ckpt_dir = run_dir / store.CKPT_DIR
    history: list[dict[str, Any]] = []
    best, start_epoch = -math.inf, 0
    if (ckpt_dir / "last.pt").exists():
        state = store.load_checkpoint(ckpt_dir / "last.pt", device)
        t.net.load_state_dict(state["model"])
        t.optimizer.load_state_dict(state["optimizer"])
        t.method.load_state_dict(state["method"])
        history, best, start_epoch = list(state["history"]), state["best_pgd20"], state["epoch"] + 1
    n_batches = math.ceil(data.y_train.numel() / cfg.batch_size)
    epochs_task = progress.task(f"{cfg.method} epochs", total=cfg.epochs, completed=start_epoch)
    for epoch in range(start_epoch, cfg.epochs):
        began = time.perf_counter()
        t.method.begin_epoch(epoch, cfg.epochs)
        lr = lr_at(cfg, epoch)
        for group in t.optimizer.param_groups:
            group["lr"] = lr
        generator = epoch_generator(cfg, epoch, device)
        batches = progress.task(f"epoch {epoch + 1}/{cfg.epochs}", total=n_batches, transient=True)
        stats = train_epoch(cfg, t, data, generator, batches.advance)
        batches.close()
        test_clean, test_pgd20 = test_accuracy(InferenceModel(t.net, t.method), data, cfg, progress)
        history.append({"epoch": epoch, **stats, "test_clean_acc": test_clean, "test_pgd20_acc": test_pgd20,
                        "lr": lr, "seconds": time.perf_counter() - began})
        state = checkpoint_state(t, epoch, history, max(best, test_pgd20))
        if test_pgd20 >= best:  # ties: the later epoch wins, as in the official code
            best = test_pgd20
            store.save_checkpoint(state, ckpt_dir / "best.pt")
        store.save_checkpoint(state, ckpt_dir / "last.pt")
        store.write_jsonl(run_dir / store.METRICS_FILE, history)
        epochs_task.advance()
        progress.log(f"{cfg.method} epoch {epoch + 1}/{cfg.epochs}: loss {stats['loss']:.3f} "
                     f"test clean {test_clean:.1%} PGD-20 {test_pgd20:.1%}")
    epochs_task.close()
    return t
