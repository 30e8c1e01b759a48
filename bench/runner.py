"""One run end to end: results folder, training (resumable), evaluation, done marker."""

from __future__ import annotations

import functools
import shutil
from pathlib import Path
from typing import Any

import torch

from bench import store
from bench.config import RunConfig
from bench.data import ImageData, LongTailData, load_dataset, long_tail_data
from bench.errors import BenchError
from bench.evaluate import EVAL_BATCH_SIZE, SampleCount, check_suite, eval_record, evaluate
from bench.inference import InferenceModel
from bench.progress import Progress
from bench.train import build_trainee, train


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA when available, else the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise BenchError(f"unknown device {name!r}; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise BenchError(f"device {name!r} is not available here; use --device cpu or auto")
    return device


@functools.lru_cache(maxsize=2)
def _cached_dataset(name: str, root: str | None) -> ImageData:
    return load_dataset(name, root)


def run_data(cfg: RunConfig, data_root: str | None, device: torch.device) -> LongTailData:
    return long_tail_data(_cached_dataset(cfg.dataset, data_root), cfg.ur, device, cfg.test_profile)


def config_record(cfg: RunConfig, data: LongTailData) -> dict[str, Any]:
    return {"run_id": cfg.run_id, "config": cfg.to_dict(), "classes": list(data.classes),
            "class_counts": data.class_counts}


def prepare_run_dir(cfg: RunConfig, out: Path, force: bool) -> Path:
    """The run's folder; ``force`` deletes a previous attempt first."""
    run_dir = Path(out) / cfg.run_id
    if force and run_dir.exists():
        shutil.rmtree(run_dir)
    return run_dir


def run_one(
    cfg: RunConfig, out: Path, *, data_root: str | None, device: torch.device, progress: Progress,
    force: bool = False,
) -> dict[str, Any]:
    """Train and evaluate one run (skipped when finished); returns its eval record."""
    run_dir = prepare_run_dir(cfg, out, force)
    if store.is_done(run_dir):
        progress.log(f"{cfg.run_id}: finished earlier, not retrained (use --force to redo)")
        return store.read_json(run_dir / store.eval_file("last"))
    progress.log(f"{cfg.run_id}: training {cfg.method} on {cfg.dataset}-LT UR {cfg.ur:g} ({cfg.arch}, {device})")
    try:
        data = run_data(cfg, data_root, device)
        store.write_json(run_dir / store.CONFIG_FILE, config_record(cfg, data))
        trainee = train(cfg, data, run_dir, device, progress)
        record = evaluate_checkpoint(run_dir, cfg, data, trainee.net, trainee.method, "last", device, progress)
    except BenchError as err:
        store.mark_failed(run_dir, str(err))
        raise
    store.mark_done(run_dir)
    return record


def evaluate_checkpoint(
    run_dir: Path, cfg: RunConfig, data: LongTailData, net: torch.nn.Module, method: Any, checkpoint: str,
    device: torch.device, progress: Progress, *, suite: str | None = None, n: SampleCount = None,
    batch_size: int = EVAL_BATCH_SIZE, eps: float | None = None, step_size: float | None = None,
) -> dict[str, Any]:
    """Load ``ckpt/<checkpoint>.pt`` into ``net``/``method`` and run the suite, writing eval(-best).json.

    ``suite`` and ``n`` default to the run's (``n="all"``: every test image); ``eps`` and ``step_size``
    to the run's, where an ``eps`` override alone brings the protocol's step eps/4.
    """
    state = store.load_checkpoint(run_dir / store.CKPT_DIR / f"{checkpoint}.pt", device)
    net.load_state_dict(state["model"])
    method.load_state_dict(state["method"])
    out_path = run_dir / store.eval_file(checkpoint)
    earlier = store.read_json(out_path) if out_path.exists() else {}
    if earlier.get("attacks") and earlier.get("epoch") != state["epoch"]:
        progress.log(f"{out_path.name} holds another epoch's results; evaluating the checkpoint afresh")
        earlier = {}
    header = eval_record(store.read_json(run_dir / store.CONFIG_FILE), checkpoint, state["epoch"], device)
    record = {**header, "attacks": earlier.get("attacks", {})}
    if step_size is None:
        step_size = cfg.step_size if eps is None else eps / 4
    progress.log(f"{cfg.run_id}: evaluating the {checkpoint} checkpoint (epoch {state['epoch'] + 1})")
    return evaluate(
        InferenceModel(net, method), data, attacks=check_suite(suite or cfg.eval_suite),
        eps=cfg.eps if eps is None else eps, step_size=step_size, seed=cfg.seed,
        n=None if n == "all" else cfg.eval_n if n is None else n, batch_size=batch_size,
        record=record, out_path=out_path, progress=progress,
    )


def evaluate_run(
    run_dir: Path, *, data_root: str | None, device: torch.device, progress: Progress,
    suite: str | None = None, n: SampleCount = None, batch_size: int = EVAL_BATCH_SIZE,
    checkpoint: str = "last", eps: float | None = None, step_size: float | None = None,
) -> dict[str, Any]:
    """``bench eval``: evaluate a trained run's checkpoint; see ``evaluate_checkpoint`` for the defaults."""
    run_dir = Path(run_dir)
    if not (run_dir / store.CONFIG_FILE).exists():
        raise BenchError(f"{run_dir} is not a run folder (no {store.CONFIG_FILE}); pass results/<run_id>")
    cfg = RunConfig.from_dict(store.read_json(run_dir / store.CONFIG_FILE)["config"])
    if not (run_dir / store.CKPT_DIR / f"{checkpoint}.pt").exists():
        raise BenchError(f"{run_dir} has no {checkpoint} checkpoint; train it first with `bench run`")
    data = run_data(cfg, data_root, device)
    trainee = build_trainee(cfg, data, device)
    return evaluate_checkpoint(run_dir, cfg, data, trainee.net, trainee.method, checkpoint, device, progress,
                               suite=suite, n=n, batch_size=batch_size, eps=eps, step_size=step_size)
