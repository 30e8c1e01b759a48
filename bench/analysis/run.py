"""``bench analyze`` for one run or a results tree: features, metrics and t-SNE maps into analysis.json.

Per run and checkpoint: ``analysis.json`` (``analysis-best.json``) holds the parameters, the test subset,
the per-class metrics and head/mid/tail means, clean and under attack; ``analysis-tsne.npz`` the 2-D maps
(float32, a few kB); ``analysis-features.npz`` the raw features only with ``save_features``. The JSON is
written last, so it marks a finished analysis; a rerun with the same parameters skips the run.
"""

from __future__ import annotations

import io
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench.analysis.embedding import tsne, tsne_params
from bench.analysis.features import FeatureSet, extract
from bench.analysis.metrics import class_geometry, reat_tail_classes
from bench.core import store
from bench.core.errors import BenchError, InputError
from bench.core.precision import device_name
from bench.core.progress import Progress
from bench.data.longtail import stratified_first_n
from bench.evaluation.metrics import class_groups
from bench.evaluation.settings import EVAL_BATCH_SIZE
from bench.evaluation.suite import SUBSET_RULE, attack_params, package_versions
from bench.models.inference import InferenceModel
from bench.training.config import RunConfig
from bench.training.loop import build_trainee, run_data

#: attacks whose adversarial images the analysis can see (AutoAttack's stay inside pyautoattack)
ANALYSIS_ATTACKS = ("fgsm", "pgd20", "pgd100", "cw100")
DEFAULT_N = 1000
#: bumped when a metric's definition changes, so older analyses are recomputed
ANALYSIS_VERSION = 1


def analysis_file(checkpoint: str, kind: str = "") -> str:
    """``analysis.json``, ``analysis-tsne.npz``, ``analysis-best-features.npz``, ..."""
    stem = "analysis" if checkpoint == "last" else f"analysis-{checkpoint}"
    return f"{stem}.json" if not kind else f"{stem}-{kind}.npz"


def _npz_bytes(**arrays: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    return buf.getvalue()


def _eval_check(run_dir: Path, checkpoint: str, key: str, params: dict[str, Any], batch_size: int,
                epoch: int, pred: np.ndarray, labels: np.ndarray, num_classes: int) -> str:
    """Whether the predictions on these images equal those in eval.json (when it scored the same images)."""
    path = run_dir / store.eval_file(checkpoint)
    if not path.exists():
        return f"not comparable: no {path.name}"
    record = store.read_json(path)
    res = record.get("attacks", {}).get(key)
    totals = np.bincount(labels, minlength=num_classes).tolist()
    if res is None or record.get("epoch") != epoch:
        return f"not comparable: {path.name} has no {key} result of this checkpoint"
    if res.get("params") != params or res.get("per_class_total") != totals or res.get("batch_size") != batch_size:
        return f"not comparable: {path.name} scored {key} with other parameters, images or batch size"
    correct = np.bincount(labels[pred == labels], minlength=num_classes).tolist()
    if correct == res.get("per_class_correct"):
        return f"same per-class correct counts as {path.name}"
    return f"differs from {path.name}: per-class correct {correct} vs {res.get('per_class_correct')}"


class _Clock:
    """Wall and process CPU seconds of consecutive steps (CPU time shows the cost on a busy machine)."""

    def __init__(self) -> None:
        self.wall: dict[str, float] = {}
        self.cpu: dict[str, float] = {}
        self._marks = (time.perf_counter(), time.process_time())

    def lap(self, step: str) -> None:
        now = (time.perf_counter(), time.process_time())
        self.wall[step], self.cpu[step] = now[0] - self._marks[0], now[1] - self._marks[1]
        self._marks = now


def analyze_run(
    run_dir: Path, *, n: int | None = DEFAULT_N, attack: str = "pgd20", checkpoint: str = "last",
    batch_size: int = EVAL_BATCH_SIZE, save_features: bool = False, data_root: str | None, device: torch.device,
    progress: Progress,
) -> dict[str, Any]:
    """Analyse one finished run's checkpoint (``n`` None: every test image); returns the analysis record."""
    run_dir = Path(run_dir)
    if attack not in ANALYSIS_ATTACKS:
        raise InputError(f"cannot analyse attack {attack!r}; choose one of: {', '.join(ANALYSIS_ATTACKS)}")
    if not (run_dir / store.CONFIG_FILE).exists():
        raise BenchError(f"{run_dir} is not a run folder (no {store.CONFIG_FILE}); pass results/<run_id>")
    if not store.is_done(run_dir):
        raise BenchError(f"{run_dir.name} is not finished (no `done` marker); finish it with `bench run` first")
    ckpt_path = run_dir / store.CKPT_DIR / f"{checkpoint}.pt"
    meta = store.read_json(run_dir / store.CONFIG_FILE)
    cfg = RunConfig.from_dict(meta["config"])
    # committed results keep no checkpoints: their analysis (done when they trained) is reused
    state = store.load_checkpoint(ckpt_path, device) if ckpt_path.exists() else None
    out_path = run_dir / analysis_file(checkpoint)
    maps_path = run_dir / analysis_file(checkpoint, "tsne")
    features_path = run_dir / analysis_file(checkpoint, "features")
    earlier = store.read_json(out_path) if out_path.exists() else {}

    data = run_data(cfg, data_root, device)
    idx = stratified_first_n(data.y_test, n, data.num_classes)
    epoch = state["epoch"] if state is not None else earlier.get("params", {}).get("epoch")
    params = {
        "analysis_version": ANALYSIS_VERSION, "checkpoint": checkpoint, "epoch": epoch,
        "n": "all" if n is None else n, "n_test": idx.numel(), "subset_rule": SUBSET_RULE,
        "attack": attack, "attack_params": attack_params(attack, cfg.eps, cfg.step_size, data.num_classes, cfg.seed),
        "batch_size": batch_size, "embedding": tsne_params(idx.numel()),
    }
    if (earlier.get("params") == params and maps_path.exists()
            and (not save_features or features_path.exists())):
        progress.log(f"{run_dir.name}: analysis done earlier with the same settings")
        return earlier
    if state is None:
        hint = "use --checkpoint last" if checkpoint != "last" else "retrain it with `bench run --force`"
        raise BenchError(f"{run_dir.name} has no {checkpoint} checkpoint to analyse; {hint}")

    trainee = build_trainee(cfg, data, device)
    trainee.net.load_state_dict(state["model"])
    trainee.method.load_state_dict(state["method"])
    model = InferenceModel(trainee.net, trainee.method)
    x_all, y_all = data.x_test[idx], data.y_test[idx]
    labels = y_all.cpu().numpy()
    progress.log(f"{run_dir.name}: analysing the {checkpoint} checkpoint on {idx.numel()} test images "
                 f"(clean and {attack})")
    clock = _Clock()
    sets: dict[str, FeatureSet] = {}
    conditions: dict[str, Any] = {}
    maps: dict[str, np.ndarray] = {}
    for key in ("clean", attack):
        key_params = params["attack_params"] if key == attack else {}
        sets[key] = extract(model, key, key_params, x_all, y_all, seed=cfg.seed, batch_size=batch_size,
                            progress=progress)
        clock.lap(f"features_{key}")
        geometry = class_geometry(sets[key].features, labels, data.class_counts)
        clock.lap(f"metrics_{key}")
        maps[key] = tsne(sets[key].features, params["embedding"])
        clock.lap(f"tsne_{key}")
        accuracy = float((sets[key].predictions == labels).mean())
        check = _eval_check(run_dir, checkpoint, key, key_params, batch_size, state["epoch"],
                            sets[key].predictions, labels, data.num_classes)
        conditions[key] = {"model_accuracy": accuracy, "eval_check": check, **geometry}
    record = {
        "run_id": meta["run_id"], "config": meta["config"], "params": params,
        "subset": "all" if idx.numel() == data.y_test.numel() else "stratified-first-n",
        "feature_dim": int(sets["clean"].features.shape[1]),
        "per_class_total": np.bincount(labels, minlength=data.num_classes).tolist(),
        "classes": list(data.classes), "class_counts": data.class_counts, "groups": class_groups(data.class_counts),
        "reat_tail_classes": reat_tail_classes(data.num_classes), "conditions": conditions,
        "files": {"tsne": maps_path.name, "features": features_path.name if save_features else None},
        "seconds": clock.wall, "cpu_seconds": clock.cpu, "versions": package_versions(),
        "device": device_name(device),
    }
    indices = idx.cpu().numpy()
    store.write_bytes(maps_path, _npz_bytes(labels=labels, test_index=indices, **maps))
    if save_features:
        store.write_bytes(features_path, _npz_bytes(
            labels=labels, test_index=indices,
            **{f"{key}_features": s.features for key, s in sets.items()},
            **{f"{key}_predictions": s.predictions for key, s in sets.items()}))
    store.write_json(out_path, record)
    return record


def analyze_path(path: Path, *, progress: Progress, **options: Any) -> list[dict[str, Any]]:
    """Analyse ``path`` as one run folder, or every finished run below it (unfinished ones are listed).

    In a tree, a run that fails is reported and the others go on; the call then raises naming the failures.
    """
    path = Path(path)
    if (path / store.CONFIG_FILE).exists():
        return [analyze_run(path, progress=progress, **options)]
    if not path.is_dir():
        raise InputError(f"no run or results folder {path}; train with `bench run` or `bench grid` first")
    runs = list(store.iter_runs(path))
    outside = [r for r in runs if store.is_external(r)]
    for run in outside:
        progress.log(f"{run.name}: skipped, an outside model (bench eval --model) has no ltbench features")
    runs = [r for r in runs if r not in outside]
    finished = [r for r in runs if store.is_done(r)]
    for run in runs:
        if not store.is_done(run):
            progress.log(f"{run.name}: skipped, not finished (no `done` marker)")
    if not finished:
        raise BenchError(f"no finished runs under {path}; run `bench run` or `bench grid` first")
    records, failures = [], []
    for run in finished:
        try:
            records.append(analyze_run(run, progress=progress, **options))
        except BenchError as err:
            progress.log(f"{run.name}: {err}")
            failures.append(run.name)
    if failures:
        raise BenchError(f"{len(failures)} of {len(finished)} runs could not be analysed: {', '.join(failures)}")
    return records
