"""`bench perf`: one whole training step of the real core against the reference loop, in one process.

Both loops get the same images and the same initial weights; each is warmed up on one batch (the real
core's compile time, with ``compile=true``, is that warm-up) and then timed over ``batches`` batches, the two
loops taking turns batch by batch. With ``cuda_graph`` the real core's attacks (and the evaluator's PGD-20) run
through CUDA-graph runners, captured during the warm-up; the reference loop is unchanged.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import platform
import resource
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from bench.core.precision import resolve_precision
from bench.core.progress import Progress
from bench.data.augment import augment, train_batches
from bench.data.datasets import dataset_info
from bench.data.longtail import LongTailData, long_tail_counts, stratified_first_n
from bench.evaluation.attacks import eval_mode
from bench.evaluation.graphed import PGDGraphs
from bench.evaluation.settings import EVAL_BATCH_SIZE
from bench.evaluation.suite import attack_params, check_attacks, run_attack
from bench.models.inference import InferenceModel
from bench.perf.reference import REFERENCE_METHODS, ReferenceLoop, reference_loader
from bench.training.config import RunConfig, build_config
from bench.training.loop import EpochStats, Trainee, attack_graphs, build_trainee, train_step

#: training images per class before the long-tailed profile is applied (synthetic data)
SYNTHETIC_N_MAX = 5000
#: test images each attack of ``eval_throughput`` runs on once before it is timed (imports, kernels, caches)
EVAL_WARMUP_IMAGES = 16


def synthetic_data(dataset: str, ur: float, device: torch.device, seed: int = 0,
                   n_test: int = EVAL_BATCH_SIZE) -> LongTailData:
    """Random uint8 images at ``dataset``'s shape with its long-tailed class counts (n_max 5000), and at least
    ``n_test`` balanced test images."""
    info = dataset_info(dataset)
    gen = torch.Generator().manual_seed(seed)
    shape = (info.channels, info.image_size, info.image_size)
    counts = long_tail_counts(SYNTHETIC_N_MAX, info.num_classes, ur)
    labels = torch.repeat_interleave(torch.arange(info.num_classes), torch.tensor(counts))
    images = torch.randint(0, 256, (labels.numel(), *shape), dtype=torch.uint8, generator=gen)
    test_y = torch.arange(info.num_classes).repeat(-(-n_test // info.num_classes))
    test_x = torch.randint(0, 256, (test_y.numel(), *shape), dtype=torch.uint8, generator=gen)
    classes = tuple(str(c) for c in range(info.num_classes))
    return LongTailData(f"synthetic-{dataset}", classes, ur, images.to(device), labels.to(device),
                        test_x.to(device), test_y.to(device))


def timed_subset(data: LongTailData, n_images: int, seed: int = 0) -> tuple[Tensor, Tensor]:
    """A fixed random ``n_images`` of the training set: the images both loops are timed on."""
    keep = torch.randperm(data.y_train.numel(), generator=torch.Generator().manual_seed(seed))[:n_images]
    keep = keep.to(data.y_train.device)
    return data.x_train[keep], data.y_train[keep]


def _with_train(data: LongTailData, x: Tensor, y: Tensor) -> LongTailData:
    """``data`` with ``x, y`` as its training images."""
    return dataclasses.replace(data, x_train=x, y_train=y)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _reset_peak_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    else:
        try:  # Linux: "5" resets the process's peak resident set size (VmHWM)
            Path("/proc/self/clear_refs").write_text("5")
        except OSError:
            pass


def peak_memory_mib(device: torch.device) -> float:
    """CUDA: max allocated since the last reset; CPU: the process's peak RSS (since the last reset on Linux)."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    scale = 1 if platform.system() == "Darwin" else 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2**20


def _timed(device: torch.device, fn: Callable[[], Any]) -> float:
    _sync(device)
    began = time.perf_counter()
    fn()
    _sync(device)
    return time.perf_counter() - began


def log(message: str) -> None:
    """A line on stderr (stdout may carry the JSON)."""
    print(message, file=sys.stderr)


def real_trainee(cfg: RunConfig, data: LongTailData, device: torch.device) -> Trainee:
    """The real core's trainee, with its training attack's CUDA-graph runners when ``cfg.cuda_graph``."""
    trainee = build_trainee(cfg, data, device)
    trainee.graphs = attack_graphs(cfg, trainee.precision, "the training attack", log)
    return trainee


def real_steps(cfg: RunConfig, data: LongTailData, timed: LongTailData, device: torch.device) -> Iterator[int]:
    """The real core's steps over ``timed`` (batching included); yields each batch's size."""
    trainee = real_trainee(cfg, data, device)
    generator = torch.Generator(device=device).manual_seed(cfg.seed)
    stats = EpochStats(data.num_classes, device)
    for batch, (x, y) in enumerate(train_batches(timed, cfg.batch_size, generator, cfg.augment)):
        train_step(cfg, trainee, x, y, generator, stats, batch)
        yield y.numel()
    stats.check(cfg, 0)


def reference_loop(cfg: RunConfig, data: LongTailData, device: torch.device) -> ReferenceLoop:
    """The reference loop with the real core's initial weights (fp32, NCHW, default SGD)."""
    real = build_trainee(dataclasses.replace(cfg, compile=False), data, device).net
    net = copy.deepcopy(real).to(memory_format=torch.contiguous_format)
    optimizer = torch.optim.SGD(net.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    return ReferenceLoop(net, optimizer, cfg.method, data.class_counts, cfg.eps, cfg.step_size, cfg.steps)


def reference_steps(cfg: RunConfig, data: LongTailData, timed: LongTailData, device: torch.device
                    ) -> Iterator[int]:
    """The reference loop's steps over the DataLoader's batches of ``timed``; yields each batch's size."""
    loop = reference_loop(cfg, data, device)
    for x, y in reference_loader(timed.x_train, timed.y_train, cfg.augment, cfg.batch_size):
        loop.step(x.to(device), y.to(device))
        yield y.numel()
    loop.end_epoch()


def interleaved(device: torch.device, loops: dict[str, Iterator[int]]) -> dict[str, dict[str, float]]:
    """Warm each loop up on its first batch (peak memory measured there), then time the rest batch by batch,
    alternating between the loops so that a machine's changing load hits both alike."""
    result: dict[str, dict[str, float]] = {}
    for name, steps in loops.items():
        _reset_peak_memory(device)
        result[name] = {"warmup_seconds": _timed(device, lambda s=steps: next(s)), "peak_mib": peak_memory_mib(device),
                        "seconds": 0.0, "images": 0}
    running = dict(loops)
    while running:
        for name, steps in list(running.items()):
            size: list[int] = []
            seconds = _timed(device, lambda s=steps, out=size: out.append(next(s, 0)))
            if size[0] == 0:
                del running[name]
                continue
            result[name]["seconds"] += seconds
            result[name]["images"] += size[0]
    for r in result.values():
        r["images_per_s"] = r["images"] / r["seconds"] if r["seconds"] else math.nan
    return result


def time_pgd20(cfg: RunConfig, data: LongTailData, device: torch.device, n_images: int) -> float:
    """The evaluator's PGD-20 (fp32, eval mode, batches of EVAL_BATCH_SIZE) in images/s, warmed up on the same
    images; with ``cfg.cuda_graph`` through CUDA-graph runners (captured in the warm-up)."""
    model = untrained_model(cfg, data, device).eval()
    x, y = data.x_test[:n_images], data.y_test[:n_images]
    graphs = attack_graphs(cfg, "fp32", "the evaluator's PGD-20", log)
    timing = time_attack(model, "pgd20", x, y, eps=cfg.eps, step_size=cfg.step_size, num_classes=data.num_classes,
                         seed=cfg.seed, warmup_images=n_images, graphs=graphs)
    return timing["images_per_s"]


def untrained_model(cfg: RunConfig, data: LongTailData, device: torch.device) -> InferenceModel:
    """``cfg``'s model with its initial weights, as the evaluator sees it."""
    trainee = build_trainee(cfg, data, device)
    return InferenceModel(trainee.net, trainee.method)


def time_attack(model: InferenceModel, key: str, x: Tensor, y: Tensor, *, eps: float, step_size: float,
                num_classes: int, seed: int, warmup_images: int = EVAL_WARMUP_IMAGES,
                graphs: PGDGraphs | None = None) -> dict[str, Any]:
    """Attack ``key`` through the evaluator's ``run_attack`` (batches of EVAL_BATCH_SIZE) on ``x, y``, after one
    warm-up call on the first ``warmup_images``: images/s, seconds, warm-up seconds, peak memory (MiB) and the
    accuracy under the attack. ``graphs``: PGD and CW through CUDA-graph runners."""
    device = y.device
    params = attack_params(key, eps, step_size, num_classes, seed)

    def attack(n: int) -> Tensor:
        return run_attack(model, key, params, x[:n], y[:n], seed=seed, batch_size=EVAL_BATCH_SIZE,
                          progress=Progress(False), graphs=graphs)

    warmup = _timed(device, lambda: attack(warmup_images))
    _reset_peak_memory(device)
    preds: list[Tensor] = []
    seconds = _timed(device, lambda: preds.append(attack(y.numel())))
    return {"images": y.numel(), "seconds": seconds, "images_per_s": y.numel() / seconds, "warmup_seconds": warmup,
            "peak_mib": peak_memory_mib(device), "acc": (preds[0] == y).float().mean().item()}


def eval_throughput(model: InferenceModel, data: LongTailData, attacks: Sequence[str], n_images: int, *,
                    eps: float, step_size: float, seed: int, source: str,
                    graphs: PGDGraphs | None = None) -> dict[str, Any]:
    """The evaluator's rate per attack (fp32, eval mode) on the stratified first ``n_images`` test images, with
    the clean accuracy there: AutoAttack attacks only the images the model classifies correctly (``attacked``),
    so its cost depends on the model (``source`` says which); the other attacks attack every image. With
    ``graphs`` PGD and CW run through CUDA-graph runners, warmed up (captured) on every image."""
    check_attacks(attacks, data.num_classes)
    idx = stratified_first_n(data.y_test, n_images, data.num_classes)
    x, y = data.x_test[idx], data.y_test[idx]
    with eval_mode(model):
        clean = run_attack(model, "clean", {}, x, y, seed=seed, batch_size=EVAL_BATCH_SIZE, progress=Progress(False))
        correct = int((clean == y).sum())
        timed = {key: time_attack(model, key, x, y, eps=eps, step_size=step_size, num_classes=data.num_classes,
                                  seed=seed, graphs=graphs if key != "aa" else None,
                                  warmup_images=y.numel() if graphs is not None and key != "aa"
                                  else EVAL_WARMUP_IMAGES)
                 for key in attacks}
    for key, timing in timed.items():
        timing["attacked"] = correct if key == "aa" else 0 if key == "clean" else y.numel()
    return {"model": source, "images": y.numel(), "clean_acc": correct / y.numel(), "precision": "fp32",
            "batch_size": EVAL_BATCH_SIZE, "eps": eps, "step_size": step_size, "cuda_graph": graphs is not None,
            "attacks": timed}


def augmentation_rate(data: LongTailData, mode: str, batch_size: int, batches: int) -> float:
    """Images/s of the ``mode`` training augmentation (uint8, per-image ops) on ``batches`` batches."""
    images = data.x_train[:batch_size * batches]

    def run() -> None:
        generator = torch.Generator(device=images.device).manual_seed(0)
        for start in range(0, images.shape[0], batch_size):
            augment(images[start:start + batch_size], mode, generator)

    return images.shape[0] / _timed(images.device, run)


def perf_config(method: str, arch: str, dataset: str, device: torch.device, precision: str, preset: str,
                batch_size: int | None, compile_net: bool, cuda_graph: bool) -> RunConfig:
    overrides: dict[str, Any] = {"precision": precision, "compile": compile_net, "cuda_graph": cuda_graph}
    if batch_size is not None:
        overrides["batch_size"] = batch_size
    cfg = build_config(method=method, dataset=dataset, arch=arch, preset=preset, overrides=overrides)
    return dataclasses.replace(cfg, precision=resolve_precision(cfg.precision, device.type))


def whole_step(
    cfg: RunConfig, data: LongTailData, device: torch.device, batches: int, eval_images: int = EVAL_BATCH_SIZE,
) -> dict[str, Any]:
    """Real core vs reference loop on the same ``batches`` batches; the JSON ``bench perf --json`` prints.

    A method the reference loop does not cover (``REFERENCE_METHODS``) is timed in the real core alone:
    ``reference`` and ``ratio`` are then None.
    """
    timed = _with_train(data, *timed_subset(data, min((batches + 1) * cfg.batch_size, data.y_train.numel())))
    loops = {"real": real_steps(cfg, data, timed, device)}
    if cfg.method in REFERENCE_METHODS:
        loops = {"reference": reference_steps(cfg, data, timed, device), **loops}
    times = interleaved(device, loops)
    reference, real = times.get("reference"), times["real"]
    n_eval = min(eval_images, data.y_test.numel())
    pgd20 = time_pgd20(cfg, data, device, n_eval) if n_eval else math.nan
    return {
        "method": cfg.method, "arch": cfg.arch, "dataset": data.name, "device": _device_name(device),
        "torch": torch.__version__, "threads": torch.get_num_threads(), "precision": cfg.precision,
        "compile": cfg.compile, "cuda_graph": cfg.cuda_graph, "batch_size": cfg.batch_size, "steps": cfg.steps,
        "images": real["images"], "batches": batches,
        "reference": reference, "real": real,
        "ratio": real["images_per_s"] / reference["images_per_s"] if reference is not None else None,
        "pgd20_images_per_s": pgd20, "pgd20_images": n_eval,
    }


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu {platform.processor() or platform.machine()} ({torch.backends.cpu.get_cpu_capability()})"


PHASES = ("attack", "update_forward", "update_backward", "bookkeeping")


def profile_step(cfg: RunConfig, data: LongTailData, device: torch.device, top: int = 12) -> dict[str, Any]:
    """torch.profiler over one real step after a warm-up step: milliseconds per phase and the top operators."""
    from torch.profiler import ProfilerActivity, profile

    trainee = real_trainee(cfg, data, device)
    generator = torch.Generator(device=device).manual_seed(cfg.seed)
    stats = EpochStats(data.num_classes, device)
    batches = train_batches(data, cfg.batch_size, generator, cfg.augment)
    train_step(cfg, trainee, *next(batches), generator, stats, 0)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    x, y = next(batches)
    with profile(activities=activities) as prof:
        train_step(cfg, trainee, x, y, generator, stats, 1)
        _sync(device)
    events = prof.key_averages()
    device_time = "device_time_total" if device.type == "cuda" else "cpu_time_total"
    phases = {e.key.removeprefix("ltbench."): getattr(e, device_time) / 1000 for e in events
              if e.key.removeprefix("ltbench.") in PHASES}
    return {"phases_ms": {p: phases.get(p, 0.0) for p in PHASES},
            "operators": events.table(sort_by="self_cpu_time_total", row_limit=top)}
