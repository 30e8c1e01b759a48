"""Outside models: any ``nn.Module`` that takes images in [0, 1], evaluated into a run folder marked external.

``bench eval --model PKG.MODULE:FACTORY [--weights FILE]`` or ``bench eval --arch A --weights FILE`` builds the
model, loads the weights strictly and runs the same attacks on the same test subsets as for trained runs.
The run folder's config.json records the factory, the weights' sha256, the dataset and the UR (which sets the
class counts and so the head / mid / tail grouping); ``bench report`` tables it beside trained runs.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import inspect
import json
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from bench.core import store
from bench.core.device import resolve_device
from bench.core.errors import BenchError, InputError
from bench.core.locks import run_lock
from bench.core.progress import Progress
from bench.data.datasets import dataset_info, load_dataset
from bench.data.images import to_float
from bench.data.longtail import LongTailData, long_tail_data
from bench.evaluation.protocol import default_step
from bench.evaluation.settings import EVAL_BATCH_SIZE, SUITES, EvalSettings, eval_settings, parse_attacks
from bench.evaluation.suite import eval_record, evaluate
from bench.models import build_model
from bench.models.inference import InferenceModel
from methods.base import Method

#: keys under which checkpoints commonly hold the state_dict (official REAT / timm / torchvision / ltbench code)
STATE_KEYS = ("state_dict", "model", "net")
#: ``arch`` of an outside model in config.json when --arch does not name it
EXTERNAL_ARCH = "external"


def import_factory(spec: str) -> Callable[..., nn.Module]:
    """``PKG.MODULE:FACTORY`` (or ``path/to/file.py:FACTORY``) -> the factory."""
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise InputError(f"--model expects PKG.MODULE:FACTORY (e.g. mymodels.wrn:build), got {spec!r}")
    try:
        if module_name.endswith(".py"):
            from bench.core.plugins import import_module  # the same import as a --plugin file

            module = import_module(str(Path(module_name).resolve()))
        else:
            if os.getcwd() not in sys.path:
                sys.path.append(os.getcwd())
            module = importlib.import_module(module_name)
    except Exception as err:
        raise InputError(f"--model {spec}: cannot import {module_name} ({type(err).__name__}: {err})") from None
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise InputError(f"--model {spec}: {module_name} has no function or class {attr!r}")
    return factory


def build_external(factory: Callable[..., nn.Module], spec: str, num_classes: int) -> nn.Module:
    """Call the factory with ``num_classes=C`` when it takes that argument, else with no arguments."""
    try:
        takes = "num_classes" in inspect.signature(factory).parameters
    except (TypeError, ValueError):
        takes = False
    try:
        model = factory(num_classes=num_classes) if takes else factory()
    except Exception as err:
        raise InputError(f"--model {spec}: the factory failed ({type(err).__name__}: {err})") from None
    if not isinstance(model, nn.Module):
        raise InputError(f"--model {spec}: the factory returned {type(model).__name__}, not a torch.nn.Module")
    return model


def read_state_dict(path: Path) -> dict[str, Tensor]:
    """A plain state_dict, or the one under ``state_dict``/``model``/``net``; ``module.`` prefixes stripped."""
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise InputError(f"--weights {path}: no such file") from None
    except Exception as err:
        raise InputError(f"--weights {path} is not a torch checkpoint that loads with weights_only=True "
                         f"({type(err).__name__}); save it with torch.save(model.state_dict(), FILE)") from None
    if isinstance(obj, Mapping) and not all(isinstance(v, Tensor) for v in obj.values()):
        found = next((obj[k] for k in STATE_KEYS if isinstance(obj.get(k), Mapping)), None)
        if found is None:
            raise InputError(f"--weights {path}: a checkpoint dict without {', '.join(STATE_KEYS)}; its keys: "
                             f"{', '.join(map(str, list(obj)[:10]))}")
        obj = found
    if not isinstance(obj, Mapping) or not obj or not all(isinstance(v, Tensor) for v in obj.values()):
        raise InputError(f"--weights {path} holds no state_dict (a mapping of parameter names to tensors)")
    state = dict(obj)
    while state and all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    return state


def _some(keys: list[str]) -> str:
    return ", ".join(keys[:8]) + (f", ... ({len(keys)} in all)" if len(keys) > 8 else "")


def load_weights(model: nn.Module, path: Path) -> str:
    """Load ``path`` into ``model`` strictly; returns the file's sha256."""
    state = read_state_dict(path)
    try:
        result = model.load_state_dict(state, strict=False)
    except RuntimeError as err:
        lines = [line.strip().rstrip(".") for line in str(err).splitlines() if "size mismatch" in line]
        what = (lines[0] + (f"; and {len(lines) - 1} more" if len(lines) > 1 else "")) if lines \
            else str(err).splitlines()[0]
        raise InputError(f"--weights {path} do not fit the model ({what}); check the factory or the checkpoint"
                         ) from None
    if result.missing_keys or result.unexpected_keys:
        parts = [f"missing keys: {_some(result.missing_keys)}" if result.missing_keys else "",
                 f"unexpected keys: {_some(result.unexpected_keys)}" if result.unexpected_keys else ""]
        raise InputError(f"--weights {path} do not fit the model ({'; '.join(p for p in parts if p)}); "
                         "check the factory or the checkpoint")
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def external_run_id(dataset: str, ur: float, arch: str, label: str, identity: Mapping[str, Any]) -> str:
    digest = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:10]
    return f"{dataset}-ur{ur:g}-{arch}-{label}-external-{digest}"


def default_eps(dataset: str) -> float:
    """The training runs' default radius: 0.1 for 28x28 images, 8/255 for larger ones."""
    return 0.1 if dataset_info(dataset).image_size <= 28 else 8 / 255


def evaluate_model(
    model: nn.Module, data: LongTailData, evaluation: EvalSettings, *, run_dir: Path, external: Mapping[str, Any],
    arch: str, label: str, eps: float, step_size: float, seed: int, device: torch.device, progress: Progress,
    run_radius: tuple[float, float],
) -> dict[str, Any]:
    """Evaluate ``model`` into ``run_dir`` (config.json, eval.json, done) at ``eps``/``step_size``; returns the
    asked results (see ``evaluate``). ``run_radius`` is the run's own (eps, step size), recorded in config.json:
    results at another radius are kept apart from those (``bench.evaluation.protocol``)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    config = {"dataset": data.name, "ur": data.ur, "arch": arch, "method": label, "method_params": {},
              "preset": "external", "seed": seed, "eps": run_radius[0], "step_size": run_radius[1],
              "test_profile": data.test_profile}
    meta = {"run_id": run_dir.name, "external": dict(external), "config": config, "classes": list(data.classes),
            "class_counts": data.class_counts}
    with run_lock(run_dir, progress.log):
        store.write_json(run_dir / store.CONFIG_FILE, meta)
        out_path = run_dir / store.eval_file(evaluation.checkpoint)
        earlier = store.read_json(out_path) if out_path.exists() else {}
        record = {**earlier, **eval_record(meta, evaluation.checkpoint, 0, device)}
        net = InferenceModel(model.to(device).eval(), Method({}, data.class_counts, device))
        progress.log(f"{run_dir.name}: evaluating the outside model {label} at eps {eps:g}: "
                     f"{', '.join(evaluation.attacks)}")
        record = evaluate(net, data, attacks=evaluation.attacks, eps=eps, step_size=step_size, seed=seed,
                          n=evaluation.n, batch_size=evaluation.batch_size, record=record,
                          save=functools.partial(store.write_json, out_path), progress=progress,
                          run_radius=run_radius, precision=evaluation.precision, settings=evaluation.to_dict())
        store.mark_done(run_dir)
    return record


def check_fits_data(model: nn.Module, data: LongTailData, spec: Any, device: torch.device) -> None:
    """Run the model on two test images before anything is written: it must map (N, C, H, W) images in [0, 1]
    to (N, num_classes) logits."""
    x = to_float(data.x_test[:2])
    was_training = model.training
    try:
        with torch.no_grad():
            out = model.to(device).eval()(x)
    except Exception as err:
        first = str(err).splitlines()[0] if str(err) else ""
        raise InputError(f"--model {spec} does not run on {data.name} images {tuple(x.shape)} in [0, 1] "
                         f"({type(err).__name__}: {first}); check the model's input channels and size") from None
    finally:
        model.train(was_training)
    if not isinstance(out, Tensor) or tuple(out.shape) != (2, data.num_classes):
        shape = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
        raise InputError(f"--model {spec} returns {shape} for 2 {data.name} images; it must return logits of "
                         f"shape (N, {data.num_classes})")


def external_data(dataset: str, ur: float, data_root: str | None, device: torch.device) -> LongTailData:
    from bench.training.config import check_ur

    return long_tail_data(load_dataset(dataset, data_root), check_ur(ur, dataset), device)


def evaluate_external(
    *, model: str | nn.Module | None, arch: str | None, weights: Path | None, dataset: str, ur: float, out: Path,
    label: str | None, evaluation: EvalSettings, eps: float | None, step_size: float | None, seed: int,
    data_root: str | None, device: torch.device, progress: Progress,
) -> tuple[Path, dict[str, Any]]:
    """``bench eval --model/--arch`` and ``bench.api.evaluate``: build (``model`` is a ``PKG.MODULE:FACTORY`` or an
    ``nn.Module``), load the weights, evaluate; returns the run folder and its eval record."""
    if model is None and (arch is None or weights is None):
        raise InputError("an outside model needs --model PKG.MODULE:FACTORY, or --arch A with --weights FILE")
    info = dataset_info(dataset)
    if isinstance(model, nn.Module):
        net, name = model, type(model).__name__
        model = f"{type(model).__module__}.{type(model).__qualname__} (a Python object)"
    elif model is not None:
        net = build_external(import_factory(model), model, info.num_classes)
        name = model.rpartition(":")[2]
    else:
        assert arch is not None
        net = build_model(arch, info.channels, lambda features: nn.Linear(features, info.num_classes))
        name = arch
    sha = load_weights(net, weights) if weights is not None else None
    data = external_data(dataset, ur, data_root, device)
    check_fits_data(net, data, model or arch, device)
    label = label or (Path(weights).stem if weights is not None else name)
    if not label or "/" in label:
        raise InputError(f"--label must be a non-empty name without '/', got {label!r}")
    external = {"model": model, "arch": arch, "weights": Path(weights).name if weights else None,
                "weights_sha256": sha}
    shown_arch = arch or EXTERNAL_ARCH
    run_id = external_run_id(dataset, data.ur, shown_arch, label, {**external, "weights": None, "seed": seed})
    run_dir = Path(out) / run_id
    earlier = store.read_json(run_dir / store.CONFIG_FILE) if (run_dir / store.CONFIG_FILE).exists() else None
    if earlier is not None and "external" not in earlier:
        raise BenchError(f"{run_dir} is a trained run, not an outside model's; pass another --out")
    # the run's own radius is that of its first evaluation (the training runs' default unless --eps was given)
    if earlier is None:
        eps = default_eps(dataset) if eps is None else eps
        run_radius = (eps, eps / 4 if step_size is None else step_size)
    else:
        run_radius = (earlier["config"]["eps"], earlier["config"]["step_size"])
        eps = run_radius[0] if eps is None else eps
    step_size = default_step(eps, *run_radius) if step_size is None else step_size
    record = evaluate_model(net, data, evaluation, run_dir=run_dir, external=external, arch=shown_arch,
                            label=label, eps=eps, step_size=step_size, seed=seed, device=device, progress=progress,
                            run_radius=run_radius)
    return run_dir, record


def evaluate_outside_model(
    model: nn.Module | str | None = None, *, dataset: str, ur: float = 100, attacks: str | Sequence[str] = "fast",
    n: int | str | None = 1000, device: str = "auto", weights: str | Path | None = None, arch: str | None = None,
    label: str | None = None, out: str | Path = "results", eps: float | None = None, step_size: float | None = None,
    seed: int = 0, batch_size: int = EVAL_BATCH_SIZE, precision: str = "fp32", data_root: str | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Evaluate an outside model (as ``bench eval --model``) and return the results asked for: eval.json's header
    with this evaluation's protocol (``eps``, ``n_test``, ...) and its ``attacks``.

    ``model``: an ``nn.Module`` taking images in [0, 1], or ``"PKG.MODULE:FACTORY"``; or None with ``arch`` and
    ``weights`` for one of ltbench's architectures. ``attacks``: a suite name (fast, paper, full) or attack
    keys; ``n``: test images (the stratified first n, or "all"); ``ur``: the imbalance ratio that sets the
    class counts and so the head / mid / tail groups. The run folder goes under ``out`` (``bench report``
    tables it beside trained runs); attacks already there with the same settings are not run again.
    """
    suite, keys = (attacks, None) if isinstance(attacks, str) and attacks in SUITES else (None, parse_attacks(
        attacks if isinstance(attacks, str) else ",".join(attacks)))
    settings = eval_settings(suite=suite, attacks=keys, n=n, batch_size=batch_size, precision=precision)
    with Progress(progress) as bar:
        _, record = evaluate_external(
            model=model, arch=arch, weights=Path(weights) if weights is not None else None, dataset=dataset, ur=ur,
            out=Path(out), label=label, evaluation=settings, eps=eps, step_size=step_size, seed=seed,
            data_root=data_root, device=resolve_device(device), progress=bar)
    return record
