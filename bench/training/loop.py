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
from torch import Tensor
from torch.profiler import record_function

from bench.core import store
from bench.core.errors import BenchError
from bench.core.precision import autocast, device_name, resolve_precision, with_precision
from bench.core.progress import Progress
from bench.data.augment import train_batches
from bench.data.datasets import load_dataset
from bench.data.images import ImageData
from bench.data.longtail import LongTailData, long_tail_data
from bench.evaluation.attacks import batch_stats_mode, eval_mode, pgd
from bench.evaluation.graphed import Log, PGDGraphs
from bench.evaluation.metrics import entropy
from bench.models import Net, build_model
from bench.models.awp import AWPSettings, WeightPerturbation
from bench.models.inference import InferenceModel
from bench.training.config import RunConfig
from bench.training.fold import FoldedNet, fold_batchnorm
from bench.training.layout import memory_format, sgd_kernel
from methods import Method, Output, get_method

EPOCH_SEED_STRIDE = 1_000_003
#: the per-epoch check that picks best.pt: clean and robust test accuracy of the model as it predicts, its PGD
#: through the given CUDA-graph runners (None: eager)
Validation = Callable[[torch.nn.Module, PGDGraphs | None], tuple[float, float]]
#: batches between the checks for a non-finite loss (each check waits for the device once)
NAN_CHECK_EVERY = 50


@dataclass
class Trainee:
    """What a run trains: the network, its method and the optimiser."""

    net: Net
    method: Method
    optimizer: torch.optim.SGD
    #: the precision the run trains in: the config's, with ``auto`` resolved for the device
    precision: str = "fp32"
    #: the eval-mode twin with BN folded into the convs, for the training attack and the per-epoch test
    #: (None: ``net`` itself)
    attack_net: FoldedNet | None = None
    #: adversarial weight perturbation (None: off)
    awp: WeightPerturbation | None = None
    #: the training attack's CUDA-graph runners (None: eager ``pgd``; see ``attack_graphs``)
    graphs: PGDGraphs | None = None

    def attack_model(self) -> torch.nn.Module:
        """The net the training attack differentiates, with the current weights folded in."""
        if self.attack_net is None:
            return self.net
        self.attack_net.refresh()
        return self.attack_net


@functools.lru_cache(maxsize=2)
def _cached_dataset(name: str, root: str | None) -> ImageData:
    return load_dataset(name, root)


def run_data(cfg: RunConfig, data_root: str | None, device: torch.device | str) -> LongTailData:
    return long_tail_data(_cached_dataset(cfg.dataset, data_root), cfg.ur, device, cfg.test_profile)


def build_trainee(cfg: RunConfig, data: LongTailData, device: torch.device) -> Trainee:
    """Model, method and optimiser for ``cfg``, seeded by ``cfg.seed``; the net in its fastest memory format."""
    torch.manual_seed(cfg.seed)
    method = get_method(cfg.method)(cfg.method_params, data.class_counts, device)
    net = build_model(cfg.arch, data.x_train.shape[1], method.build_head).to(device)
    net = net.to(memory_format=memory_format(cfg.arch))
    optimizer = torch.optim.SGD(net.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay,
                                **sgd_kernel(device))
    settings = awp_settings(cfg, method)
    awp = WeightPerturbation(net, settings) if settings is not None else None
    precision = resolve_precision(cfg.precision, device.type)
    if cfg.compile:  # compiled graphs fuse BN themselves
        net.backbone.compile()
        net.head.compile()
        return Trainee(net, method, optimizer, precision, awp=awp)
    return Trainee(net, method, optimizer, precision, fold_batchnorm(net), awp)


def awp_settings(cfg: RunConfig, method: Method) -> AWPSettings | None:
    """The method's own weight perturbation (``awp``), else the run's (``awp_gamma`` > 0), else None."""
    own = method.weight_perturbation(method.p)
    if own is not None:
        return own
    return AWPSettings(cfg.awp_gamma, cfg.awp_warmup, cfg.awp_lr) if cfg.awp_gamma > 0 else None


def graph_blocker(cfg: RunConfig, precision: str) -> str | None:
    """Why the PGD attacks of ``cfg`` in ``precision`` run eagerly under ``cuda_graph`` (None: they are captured)."""
    if precision != "fp32":
        return f"precision {precision}: only fp32 attacks are captured"
    if cfg.attack_bn != "eval":
        return f"attack_bn={cfg.attack_bn}: only the eval-mode attack is captured"
    if cfg.compile:
        return "compile=true: torch.compile's graphs are not captured again"
    return None


def attack_graphs(cfg: RunConfig, precision: str, what: str, log: Log) -> PGDGraphs | None:
    """CUDA-graph runners for ``what`` when ``cfg.cuda_graph`` asks for them and nothing rules them out; None
    otherwise, with one logged line saying why when the field asked for them."""
    if not cfg.cuda_graph:
        return None
    reason = graph_blocker(cfg, precision)
    if reason is not None:
        log(f"{cfg.run_id}: cuda_graph: eager PGD for {what} ({reason})")
        return None
    return PGDGraphs(log)


def lr_at(cfg: RunConfig, epoch: int) -> float:
    """Step schedule: lr x gamma after each milestone epoch."""
    return cfg.lr * cfg.lr_gamma ** sum(epoch >= m for m in cfg.milestones)


def epoch_generator(cfg: RunConfig, epoch: int, device: torch.device) -> torch.Generator:
    """Every random draw of an epoch comes from (seed, epoch), so a resumed run repeats it exactly."""
    seed = cfg.seed * EPOCH_SEED_STRIDE + epoch
    torch.manual_seed(seed)
    return torch.Generator(device=device).manual_seed(seed)


class EpochStats:
    """The epoch's running statistics, kept on the device so the training step never waits for the host.

    ``bad_batch`` is the first batch whose loss was not finite (-1: none yet); ``check`` reads it.
    """

    def __init__(self, num_classes: int, device: torch.device):
        self.hist = torch.zeros(num_classes, dtype=torch.long, device=device)
        self.loss_sum = torch.zeros((), device=device)
        self.clean_correct = torch.zeros((), dtype=torch.long, device=device)
        self.adv_correct = torch.zeros((), dtype=torch.long, device=device)
        self.bad_batch = torch.full((), -1, dtype=torch.long, device=device)
        self.bad_loss = torch.zeros((), device=device)

    def add(self, batch: int, loss: Tensor, y: Tensor, clean_logits: Tensor, adv_logits: Tensor) -> None:
        pred_adv = adv_logits.argmax(1)
        self.hist.scatter_add_(0, pred_adv, torch.ones_like(pred_adv))
        self.adv_correct += (pred_adv == y).sum()
        self.clean_correct += (clean_logits.argmax(1) == y).sum()
        self.loss_sum += loss * y.numel()
        first_bad = (self.bad_batch < 0) & ~torch.isfinite(loss)
        self.bad_batch = torch.where(first_bad, batch, self.bad_batch)
        self.bad_loss = torch.where(first_bad, loss, self.bad_loss)

    def check(self, cfg: RunConfig, epoch: int) -> None:
        """Raise (one host sync) if a loss so far was not finite; the last checkpoint stays the last good one."""
        batch = int(self.bad_batch)
        if batch >= 0:
            raise BenchError(
                f"loss became {self.bad_loss.item()} in epoch {epoch + 1}, batch {batch + 1}; the last good "
                f"checkpoint is kept; lower the learning rate (--set lr=...) or the method's loss weights "
                f"(--set {cfg.method}.PARAM=...)"
            )


def attack_steps(cfg: RunConfig, method: Method) -> int:
    """The training attack's PGD steps: the method's own (0: train on clean images) or the run's."""
    return cfg.steps if method.attack_steps is None else method.attack_steps


def outer_loss(precision: str, method: Method, net: Net, x_adv: Tensor, x: Tensor, y: Tensor
               ) -> tuple[Tensor, Output]:
    """The method's training loss of ``net`` (train mode, in ``precision``) and the AEs' output."""
    with autocast(precision, x.device):
        out_adv = net.forward_features(x_adv)
        out_clean = net.forward_features(x) if method.needs_clean_output else None
    out_adv = Output(*(o.float() for o in out_adv))
    out_clean = Output(*(o.float() for o in out_clean)) if out_clean is not None else None
    loss = method.train_loss(out_adv, y, out_clean)
    if not isinstance(loss, Tensor) or loss.dim() != 0:
        got = f"a tensor of shape {tuple(loss.shape)}" if isinstance(loss, Tensor) else type(loss).__name__
        raise BenchError(f"method {method.name!r}: train_loss returned {got}, not a scalar tensor; reduce it "
                         "(e.g. .mean()) and test the method with bench.testing.check_method")
    return loss, out_adv


def craft(cfg: RunConfig, t: Trainee, x: Tensor, y: Tensor, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """The method's training AEs and the clean logits, with BatchNorm as ``cfg.attack_bn`` says."""
    method = t.method
    steps = attack_steps(cfg, method)
    train_bn = cfg.attack_bn == "train"
    model = with_precision(t.net if train_bn else t.attack_model(), t.precision)
    with torch.no_grad(), batch_stats_mode(model) if train_bn else eval_mode(model):
        clean_logits = model(x)
    if steps == 0:
        return x, clean_logits
    eps, step_size = method.attack_budget(y, cfg.eps, cfg.step_size)
    if t.graphs is not None:  # attack_bn is eval here
        x_adv = t.graphs.pgd(model, x, y, eps=eps, step_size=step_size, steps=steps, start_eps=cfg.eps,
                             loss_fn=method.attack_loss, reads={"clean_logits": clean_logits},
                             start=method.attack_start, generator=generator)
        return x_adv, clean_logits
    x_adv = pgd(model, x, y, eps=eps, step_size=step_size, steps=steps, start_eps=cfg.eps,
                loss_fn=functools.partial(method.attack_loss, clean_logits=clean_logits),
                start=method.attack_start, generator=generator, train_bn=train_bn)
    return x_adv, clean_logits


def train_step(cfg: RunConfig, t: Trainee, x: Tensor, y: Tensor, generator: torch.Generator,
               stats: EpochStats, batch: int) -> None:
    """One adversarial training step (the method's PGD attack, then the update) in the run's precision.

    With AWP the update is taken at the adversarially perturbed weights, which are restored afterwards.
    No host synchronisation: statistics and the non-finite-loss flag are accumulated in ``stats``.
    """
    net, method = t.net, t.method
    x = x.contiguous(memory_format=memory_format(cfg.arch))
    with record_function("ltbench.attack"):
        x_adv, clean_logits = craft(cfg, t, x, y, generator)
    net.train()
    diff = None
    if t.awp is not None and t.awp.active:
        with record_function("ltbench.awp"):
            diff = t.awp.compute(net, lambda proxy: outer_loss(t.precision, method, proxy, x_adv, x, y)[0])
            t.awp.perturb(net, diff)
    with record_function("ltbench.update_forward"):
        loss, out_adv = outer_loss(t.precision, method, net, x_adv, x, y)
    with record_function("ltbench.update_backward"):
        t.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        t.optimizer.step()
    if diff is not None:
        t.awp.restore(net, diff)
    with record_function("ltbench.bookkeeping"), torch.no_grad():
        stats.add(batch, loss.detach(), y, clean_logits, out_adv.logits)


def train_epoch(
    cfg: RunConfig, t: Trainee, data: LongTailData, generator: torch.Generator, on_batch: Callable[[], None],
    epoch: int = 0,
) -> dict[str, Any]:
    """One epoch of adversarial training; returns the epoch's training statistics.

    A non-finite loss is detected every ``NAN_CHECK_EVERY`` batches and at the epoch's end.
    """
    stats = EpochStats(data.num_classes, data.y_train.device)
    for batch, (x, y) in enumerate(train_batches(data, cfg.batch_size, generator, cfg.augment)):
        train_step(cfg, t, x, y, generator, stats, batch)
        if (batch + 1) % NAN_CHECK_EVERY == 0:
            stats.check(cfg, epoch)
        on_batch()
    stats.check(cfg, epoch)
    n = data.y_train.numel()
    hist_list = stats.hist.tolist()
    t.method.end_epoch(stats.hist)
    return budget_log(cfg, t.method, data.num_classes) | {
        "loss": stats.loss_sum.item() / n,
        "train_clean_acc": stats.clean_correct.item() / n,
        "train_adv_acc": stats.adv_correct.item() / n,
        "ae_pred_hist": hist_list,
        "ae_pred_entropy": entropy(hist_list),
        "attack_steps": attack_steps(cfg, t.method),
    }


def budget_log(cfg: RunConfig, method: Method, num_classes: int) -> dict[str, Any]:
    """``attack_eps_c``, each class's training-attack budget this epoch, for a method with class-wise budgets."""
    eps, _ = method.attack_budget(torch.arange(num_classes, device=method.device), cfg.eps, cfg.step_size)
    return {"attack_eps_c": eps.flatten().tolist()} if isinstance(eps, Tensor) else {}


def checkpoint_state(t: Trainee, epoch: int, history: list[dict[str, Any]], best: float) -> dict[str, Any]:
    return {
        "epoch": epoch,
        "model": t.net.state_dict(),
        "optimizer": t.optimizer.state_dict(),
        "method": t.method.state_dict(),
        "history": history,
        "best_pgd20": best,
        "precision": t.precision,
    }


def resumed_precision(cfg: RunConfig, resolved: str, state: dict[str, Any], progress: Progress) -> str:
    """The precision a resumed run continues in: the one its checkpoint recorded, never a silent switch.

    With ``auto`` the recorded one wins over what this device would pick (logged); a checkpoint from before
    precision was recorded continues in ``resolved``.
    """
    recorded = state.get("precision")
    if recorded is None or recorded == resolved:
        return resolved
    if cfg.precision != "auto":
        raise BenchError(f"the checkpoint of {cfg.run_id} was trained in {recorded}, the config asks for "
                         f"{cfg.precision}; rerun with --force to retrain it")
    progress.log(f"{cfg.run_id}: resuming in {recorded}, the precision it started in (auto would pick "
                 f"{resolved} here)")
    return recorded


def train(cfg: RunConfig, data: LongTailData, run_dir: Path, device: torch.device, progress: Progress,
          validate: Validation) -> Trainee:
    """Train ``cfg`` into ``run_dir``, resuming from ``ckpt/last.pt`` if a previous attempt left one.

    ``validate`` gives the per-epoch clean and robust test accuracy; the robust one picks ``ckpt/best.pt``.
    """
    t = build_trainee(cfg, data, device)
    ckpt_dir = run_dir / store.CKPT_DIR
    history: list[dict[str, Any]] = []
    best, start_epoch = -math.inf, 0
    if (ckpt_dir / "last.pt").exists():
        state = store.load_checkpoint(ckpt_dir / "last.pt", device)
        store.read_jsonl(run_dir / store.METRICS_FILE)  # a damaged file stops here, naming the fix
        t.net.load_state_dict(state["model"])
        t.optimizer.load_state_dict(state["optimizer"])
        t.method.load_state_dict(state["method"])
        history, best, start_epoch = list(state["history"]), state["best_pgd20"], state["epoch"] + 1
        t.precision = resumed_precision(cfg, t.precision, state, progress)
    t.graphs = attack_graphs(cfg, t.precision, "the training attack and the per-epoch test", progress.log)
    test_graphs = PGDGraphs(progress.log) if t.graphs is not None else None
    n_batches = math.ceil(data.y_train.numel() / cfg.batch_size)
    epochs_task = progress.task(f"{cfg.method} epochs", total=cfg.epochs, completed=start_epoch)
    for epoch in range(start_epoch, cfg.epochs):
        began = time.perf_counter()
        t.method.begin_epoch(epoch, cfg.epochs)
        for graphs in (t.graphs, test_graphs):  # the method may have replaced what its attack loss reads
            if graphs is not None:
                graphs.clear()
        if t.awp is not None:
            t.awp.begin_epoch(epoch)
        lr = lr_at(cfg, epoch)
        for group in t.optimizer.param_groups:
            group["lr"] = lr
        generator = epoch_generator(cfg, epoch, device)
        batches = progress.task(f"epoch {epoch + 1}/{cfg.epochs}", total=n_batches, transient=True)
        stats = train_epoch(cfg, t, data, generator, batches.advance, epoch)
        batches.close()
        # the BN-folded twin computes the same function as the net, in the run's precision
        test_clean, test_pgd20 = validate(with_precision(InferenceModel(t.attack_model(), t.method), t.precision),
                                          test_graphs)
        history.append({"epoch": epoch, **stats, "test_clean_acc": test_clean, "test_pgd20_acc": test_pgd20,
                        "lr": lr, "seconds": time.perf_counter() - began, "device": device_name(device),
                        "precision": t.precision})
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
