"""The attack suite: clean, FGSM, PGD-20/100, CW-100 and AutoAttack, through the method's inference path.

Every forward, clean or adversarial, goes through ``InferenceModel`` (``method.predict(net(x))``), so an
attack differentiates exactly the logits that are evaluated; the model is in eval mode throughout.
Each attack stores per-class counts, head/mid/tail means, the worst class and balanced robustness
(mean per-class accuracy, TAET arXiv 2503.01924); see ``bench.evaluation.metrics``.
"""

from __future__ import annotations

import functools
import platform
import time
import zlib
from collections.abc import Callable, Sequence
from importlib.metadata import PackageNotFoundError, version
from typing import Any, Literal

import torch
from torch import Tensor

from bench import __version__
from bench.core.errors import BenchError, InputError, unknown_name
from bench.core.precision import device_name, with_precision
from bench.core.progress import Progress
from bench.data.images import to_float
from bench.data.longtail import LongTailData, stratified_first_n
from bench.evaluation.attacks import LossFn, ce_loss, cw_loss, eval_mode, pgd
from bench.evaluation.autoattack import (
    AA_MAX_TARGETS,
    AA_MIN_CLASSES,
    CHUNK_KEYS,
    aa_chunk,
    autoattack_checks,
    autoattack_predictions,
)
from bench.evaluation.graphed import PGDGraphs
from bench.evaluation.metrics import accuracy_summary, pack_correct
from bench.evaluation.protocol import FIELDS as PROTOCOL_FIELDS
from bench.evaluation.protocol import Block, EvalResults, MalformedResults, Protocol
from bench.evaluation.settings import ATTACK_KEYS, EVAL_BATCH_SIZE
from bench.models.inference import InferenceModel

CW_KAPPA = 50.0
#: how many test images to evaluate: a number, "all", or None for the run's configured count
SampleCount = int | Literal["all"] | None
SUBSET_RULE = ("first ceil(n * n_c / N) test images of class c (n_c of the N test images), in test-set order "
               "(no randomness): ceil(n/C) per class on a balanced test set")


def check_attacks(attacks: Sequence[str], num_classes: int) -> None:
    """Fail before anything runs: unknown attack keys, or AutoAttack on fewer than 4 classes."""
    for key in attacks:
        if key not in ATTACK_KEYS:
            raise unknown_name("attack", key, list(ATTACK_KEYS))
    if "aa" in attacks and num_classes < AA_MIN_CLASSES:
        raise InputError(
            f"AutoAttack needs at least {AA_MIN_CLASSES} classes (APGD-T's targeted DLR loss), the model has "
            f"{num_classes}; use the fast suite"
        )


def package_version(name: str) -> str:
    try:
        return version(name)
    except PackageNotFoundError:
        return "missing"


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
        return {"eps": eps, "norm": "Linf", "version": "standard",
                "attacks": ["apgd-ce", "apgd-t", "fab-t", "square"],
                "n_target_classes": min(AA_MAX_TARGETS, num_classes - 1), "seed": seed,
                "package": f"pyautoattack {package_version('pyautoattack')}"}
    raise unknown_name("attack", key, list(ATTACK_KEYS))


def attack_generator(key: str, seed: int, device: torch.device) -> torch.Generator:
    """The generator of attack ``key``'s random starts, drawn batch after batch over the test subset."""
    return torch.Generator(device=device).manual_seed(seed + zlib.crc32(key.encode()))


@functools.cache
def attack_loss(name: str, kappa: float | None = None) -> LossFn:
    """The per-sample loss of an attack's parameters (``ce`` or ``cw``), one object per (name, kappa), so the
    CUDA-graph runners of ``bench.evaluation.graphed`` find theirs batch after batch."""
    return ce_loss if name == "ce" else functools.partial(cw_loss, kappa=kappa)


def adversarial_images(
    model: InferenceModel, key: str, params: dict[str, Any], x: Tensor, y: Tensor, generator: torch.Generator,
    graphs: PGDGraphs | None = None,
) -> Tensor:
    """One batch's examples under attack ``key`` (the images themselves for ``clean``; not for AutoAttack), through
    ``graphs``' static runners when given."""
    if key == "aa":
        raise ValueError("AutoAttack's examples come from pyautoattack; use attack_predictions")
    if key == "clean":
        return x
    attack = pgd if graphs is None else graphs.pgd
    return attack(model, x, y, eps=params["eps"], step_size=params["step_size"], steps=params["steps"],
                  loss_fn=attack_loss(params["loss"], params.get("kappa")), start=params["start"],
                  generator=generator)


def attack_predictions(
    model: InferenceModel, key: str, params: dict[str, Any], x: Tensor, y: Tensor, generator: torch.Generator,
    graphs: PGDGraphs | None = None,
) -> Tensor:
    """Labels ``model`` predicts for one batch (x float in [0, 1]) under attack ``key``."""
    if key == "aa":
        return autoattack_predictions(model, x, y, params)
    x = adversarial_images(model, key, params, x, y, generator, graphs)
    with torch.no_grad():
        return model(x).argmax(1)


def package_versions() -> dict[str, str]:
    return {"ltbench": __version__, "torch": torch.__version__, "python": platform.python_version(),
            "pyautoattack": package_version("pyautoattack"), "torchvision": package_version("torchvision")}


def _rerun_reason(stored: dict[str, Any] | None, wanted: dict[str, Any], totals: list[int],
                 force: bool) -> str | None:
    """Why a requested attack runs although its protocol may hold a result (None: reuse the stored one).

    AutoAttack's chunk (``CHUNK_KEYS``) is not compared: a result in other chunks is the same attack up to its
    random draws. A stored result without per-image results (``correct_bits``, older records) runs again.
    """
    if stored is None:
        return "missing"
    if force:
        return "--force"
    if stored.get("per_class_total") != totals:
        return "other test images"
    if {k: v for k, v in (stored.get("params") or {}).items() if k not in CHUNK_KEYS} != wanted:
        return "other parameters"
    if "correct_bits" not in stored:
        return "no per-image results"
    return None


def run_attack(
    model: InferenceModel, key: str, params: dict[str, Any], x_all: Tensor, y_all: Tensor, *, seed: int,
    batch_size: int, progress: Progress, graphs: PGDGraphs | None = None,
) -> Tensor:
    """Predicted labels for every image under attack ``key``, batch by batch with a progress bar; FGSM, PGD and
    CW through ``graphs``' static runners when given (the last partial batch gets its own).

    For AutoAttack ``batch_size`` is its chunk (``aa_chunk``): one pyautoattack call per chunk, each the full
    standard attack, and the bar advances per chunk.
    """
    generator = attack_generator(key, seed, y_all.device)
    task = progress.task(f"eval {key}", total=y_all.numel(), transient=True)
    preds = []
    for start in range(0, y_all.numel(), batch_size):
        x, y = to_float(x_all[start:start + batch_size]), y_all[start:start + batch_size]
        preds.append(attack_predictions(model, key, params, x, y, generator, graphs))
        task.advance(y.numel())
    task.close()
    return torch.cat(preds)


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
    save: Callable[[dict[str, Any]], None] | None,
    progress: Progress,
    run_radius: tuple[float, float],
    precision: str = "fp32",
    settings: dict[str, Any] | None = None,
    force: bool = False,
    graphs: PGDGraphs | None = None,
) -> dict[str, Any]:
    """Run ``attacks`` at ``eps``/``step_size`` on the stratified first-``n`` test images (all for None) and
    keep them in ``record`` (an eval.json, see ``bench.evaluation.protocol``); ``save`` gets the record after
    each attack (the runner writes it to eval.json, so a killed evaluation keeps its finished attacks).

    ``run_radius`` is the run's training (eps, step size), which with fp32 makes its primary protocol;
    ``settings`` (the evaluation settings asked for) are recorded as ``evaluation`` when this is it.
    ``precision="bf16"`` runs every attack under bf16 autocast and records it in each attack's parameters.
    An attack whose protocol already holds a result with the same parameters on the same images is skipped
    unless ``force``; results under other protocols are never touched. ``graphs``: CUDA-graph runners for FGSM,
    PGD and CW (None: eager), cleared after each attack. Returns the asked results: the
    record's header with this protocol's fields and ``attacks`` holding the requested attacks.
    """
    check_attacks(attacks, data.num_classes)
    idx = stratified_first_n(data.y_test, n, data.num_classes)
    x_all, y_all = data.x_test[idx], data.y_test[idx]
    totals = torch.bincount(y_all.cpu(), minlength=data.num_classes).tolist()
    subset = "all" if idx.numel() == data.y_test.numel() else "stratified-first-n"
    asked = Protocol(precision, data.test_profile, idx.numel(), eps, step_size)
    try:
        results = EvalResults.read(record, *run_radius)
    except MalformedResults as err:
        raise BenchError(f"eval record of {record.get('run_id', 'the run')}: {err}; delete its eval.json and evaluate "
                         "again") from None
    if settings is not None and results.is_primary(asked):
        record["evaluation"] = settings
    record["subset_rule"] = SUBSET_RULE
    model = with_precision(model, precision)
    done: dict[str, dict[str, Any]] = {}
    with eval_mode(model):
        for key in attacks:
            block = results.block(results.home(key, asked), subset)
            wanted = attack_params(key, eps, step_size, data.num_classes, seed)
            if precision != "fp32":
                wanted = {**wanted, "precision": precision}
            stored = block.attacks.get(key)
            reason = _rerun_reason(stored, wanted, totals, force)
            if stored is not None and reason is None:
                progress.log(f"  {key:>6}: {stored['acc']:.2%} (done earlier, same settings)")
                done[key] = stored
                continue
            if stored is not None:
                progress.log(f"  {key:>6}: replacing the stored result ({reason})")
            began = time.perf_counter()
            params, chunk = wanted, batch_size
            if key == "aa":
                chunk, rule = aa_chunk(model, x_all, batch_size)
                params = {**wanted, "chunk": chunk, "chunk_rule": rule}
            with autoattack_checks() as checks:
                pred = run_attack(model, key, params, x_all, y_all, seed=seed, batch_size=chunk, progress=progress,
                                  graphs=graphs)
            if graphs is not None:
                graphs.clear()
            summary = accuracy_summary(pred, y_all, data.class_counts)
            seconds = time.perf_counter() - began
            done[key] = {**summary, "correct_bits": pack_correct(pred == y_all, y_all), "seconds": seconds,
                         "params": params, "batch_size": batch_size, "device": device_name(y_all.device)}
            if key == "aa":
                done[key]["checks"] = checks
            block.put(key, done[key])
            if save is not None:
                save(results.write(record))
            progress.log(f"  {key:>6}: {summary['acc']:.2%} (tail {summary['tail']:.2%}, worst "
                         f"{summary['worst']:.2%}, {seconds:.1f} s)")
    updated = results.write(record)
    record.clear()
    record.update(updated)
    view = {k: v for k, v in record.items() if k not in (*PROTOCOL_FIELDS, "attacks", "protocols")}
    return {**view, **Block(asked, subset).fields(), "attacks": done}


def epoch_validation(
    data: LongTailData, *, n: int | None, eps: float, step_size: float, seed: int, progress: Progress,
) -> Callable[[InferenceModel, PGDGraphs | None], tuple[float, float]]:
    """The training core's per-epoch check: clean and PGD-20 accuracy on the stratified first-``n`` test images,
    PGD-20 through the CUDA-graph runners the core passes (None: eager)."""
    idx = stratified_first_n(data.y_test, n, data.num_classes)
    x, y = data.x_test[idx], data.y_test[idx]

    def validate(model: InferenceModel, graphs: PGDGraphs | None = None) -> tuple[float, float]:
        model.eval()
        accuracies = []
        for key in ("clean", "pgd20"):
            params = attack_params(key, eps, step_size, data.num_classes, seed)
            preds = run_attack(model, key, params, x, y, seed=seed, batch_size=EVAL_BATCH_SIZE, progress=progress,
                               graphs=graphs)
            accuracies.append((preds == y).float().mean().item())
        return accuracies[0], accuracies[1]

    return validate


def eval_record(config: dict[str, Any], checkpoint: str, epoch: int, device: torch.device) -> dict[str, Any]:
    """The header of eval.json; ``evaluate`` adds the settings, the test images and the results."""
    return {
        "run_id": config["run_id"],
        "config": config["config"],
        "checkpoint": checkpoint,
        "epoch": epoch,
        "versions": package_versions(),
        "device": device_name(device),
    }
