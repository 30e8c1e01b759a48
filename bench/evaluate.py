"""The attack suite: clean, FGSM, PGD-20/100, CW-100 and AutoAttack, through the method's inference path."""

from __future__ import annotations

import platform
import time
import zlib
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from bench import __version__, store
from bench.attacks import ce_loss, cw_loss, pgd
from bench.data import LongTailData, stratified_first_n, to_float
from bench.errors import InputError, unknown_name
from bench.inference import InferenceModel
from bench.metrics import accuracy_summary
from bench.progress import Progress

ATTACK_KEYS = ("clean", "fgsm", "pgd20", "pgd100", "cw100", "aa")
SUITES: dict[str, tuple[str, ...]] = {
    "fast": ("clean", "pgd20"),
    "paper": ("clean", "pgd20", "pgd100", "cw100", "aa"),
    "full": ATTACK_KEYS,
}
CW_KAPPA = 50.0


def check_suite(name: str) -> tuple[str, ...]:
    if name not in SUITES:
        raise unknown_name("evaluation suite", name, list(SUITES))
    return SUITES[name]


def attack_params(key: str, eps: float, step_size: float, num_classes: int, seed: int) -> dict[str, Any]:
    """The full parameters of one attack; a stored result is reused only when they match."""
    if key == "clean":
        return {}
    if key == "fgsm":
        return {"eps": eps, "step_size": eps, "steps": 1, "start": "none", "loss": "ce"}
    if key in ("pgd20", "pgd100"):
        return {"eps": eps, "step_size": step_size, "steps": int(key[3:]), "start": "uniform", "loss": "ce",
                "restarts": 1, "seed": seed}
    if key == "cw100":
        return {"eps": eps, "step_size": step_size, "steps": 100, "start": "uniform", "loss": "cw",
                "kappa": CW_KAPPA, "restarts": 1, "seed": seed}
    if key == "aa":
        return {"eps": eps, "norm": "Linf", "version": "standard", "n_target_classes": min(9, num_classes - 1),
                "seed": seed}
    raise unknown_name("attack", key, list(ATTACK_KEYS))


def _autoattack_correct(model: InferenceModel, x: Tensor, y: Tensor, params: dict[str, Any], batch_size: int) -> Tensor:
    from pyautoattack import AutoAttack

    adversary = AutoAttack(model, eps=params["eps"], norm="Linf", version="standard", seed=params["seed"],
                           device=x.device)
    adversary.apgd_targeted.n_target_classes = params["n_target_classes"]
    adversary.fab.n_target_classes = params["n_target_classes"]
    _, y_adv = adversary.run_standard_evaluation(x, y, batch_size=batch_size)
    return y_adv == y


def attack_correct(
    model: InferenceModel, key: str, params: dict[str, Any], x: Tensor, y: Tensor, batch_size: int,
    generator: torch.Generator,
) -> Tensor:
    """Per-sample correctness of ``model`` under attack ``key`` for one batch (x float in [0, 1])."""
    if key == "aa":
        return _autoattack_correct(model, x, y, params, batch_size)
    if key != "clean":
        loss_fn = ce_loss if params["loss"] == "ce" else lambda z, t: cw_loss(z, t, params["kappa"])
        x = pgd(model, x, y, eps=params["eps"], step_size=params["step_size"], steps=params["steps"],
                loss_fn=loss_fn, start=params["start"], generator=generator)
    with torch.no_grad():
        return model(x).argmax(1) == y


def package_versions() -> dict[str, str]:
    out = {"ltbench": __version__, "torch": torch.__version__, "python": platform.python_version()}
    for name in ("pyautoattack", "torchvision"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "missing"
    return out


def evaluate(
    model: InferenceModel,
    data: LongTailData,
    *,
    attacks: Sequence[str],
    eps: float,
    step_size: float,
    seed: int,
    n: int | None,
    batch_size: int,
    record: dict[str, Any],
    out_path: Path | None,
    progress: Progress,
) -> dict[str, Any]:
    """Run ``attacks`` on the stratified first-``n`` test images, saving ``record`` after each attack.

    Attacks already in ``record`` with the same parameters and sample count are skipped.
    """
    model.eval()
    idx = stratified_first_n(data.y_test, n, data.num_classes)
    x_all, y_all = data.x_test[idx], data.y_test[idx]
    record["n_test"] = idx.numel()
    record["subset"] = "all" if idx.numel() == data.y_test.numel() else "stratified-first-n"
    record.setdefault("attacks", {})
    for key in attacks:
        params = attack_params(key, eps, step_size, data.num_classes, seed)
        done = record["attacks"].get(key)
        if done is not None and done.get("params") == params and sum(done["per_class_total"]) == idx.numel():
            continue
        generator = torch.Generator(device=y_all.device).manual_seed(seed + zlib.crc32(key.encode()))
        began = time.perf_counter()
        task = progress.task(f"eval {key}", total=idx.numel(), transient=True)
        correct = []
        for start in range(0, idx.numel(), batch_size):
            x, y = to_float(x_all[start:start + batch_size]), y_all[start:start + batch_size]
            correct.append(attack_correct(model, key, params, x, y, batch_size, generator))
            task.advance(y.numel())
        task.close()
        summary = accuracy_summary(torch.cat(correct), y_all, data.class_counts)
        record["attacks"][key] = {**summary, "seconds": time.perf_counter() - began, "params": params}
        if out_path is not None:
            store.write_json(out_path, record)
        progress.log(f"  {key:>6}: {summary['acc']:.2%} (tail {summary['tail']:.2%})")
    return record


def eval_record(config: dict[str, Any], checkpoint: str, device: torch.device) -> dict:
    """The header of eval.json; ``evaluate`` adds the sample count, subset and attacks."""
    return {
        "run_id": config["run_id"],
        "config": config["config"],
        "checkpoint": checkpoint,
        "subset_rule": "first ceil(n/C) test images of every class, in test-set order (no randomness)",
        "versions": package_versions(),
        "device": str(device) if device.type != "cuda" else torch.cuda.get_device_name(device),
    }


def check_n(n: int | None) -> None:
    if n is not None and n <= 0:
        raise InputError(f"--n must be a positive number of test images, got {n}")
