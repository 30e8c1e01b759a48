"""Read a results tree: finished runs with their eval records, and runs that are unfinished or failed."""

from __future__ import annotations

import json
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bench.core import store
from bench.core.errors import InputError
from bench.evaluation.metrics import unpack_correct
from bench.evaluation.protocol import Block, EvalResults, MalformedResults
from bench.report.labels import attack_sort_key, method_labels, method_sort_key
from bench.report.protocol import run_protocol
from bench.training.config import LATE_DEFAULTS

#: eval record read for each checkpoint
EVAL_FILES = {"last": "eval.json", "best": "eval-best.json"}
#: per-attack fields the report needs
_ATTACK_FIELDS = ("acc", "head", "mid", "tail", "worst", "balanced")
_CONFIG_FIELDS = ("dataset", "arch", "ur", "method", "seed")
#: columns of ``collect``'s frame
COLUMNS = ["run_id", "dataset", "arch", "ur", "method", "method_label", "seed", "precision", "test_profile", "attack",
           *_ATTACK_FIELDS, "per_class_acc", "trained_on", "eval_device", "per_class_total", "correct", "classes",
           "class_counts"]
#: status of a finished run whose config.json or eval record cannot be used
UNREADABLE = "unreadable"
#: ``trained_on`` of runs whose metrics.jsonl names no device (written before ltbench recorded it)
NOT_RECORDED = "not recorded"


@dataclass(frozen=True)
class RunProblem:
    """A run folder the report cannot use: ``status`` is a ``store.run_status`` state other than ``done``,
    or ``unreadable`` for a finished run whose records cannot be used (the reason names the file)."""

    run_id: str
    status: str
    reason: str


@dataclass(frozen=True)
class Run:
    """A finished run and the eval record of the chosen checkpoint."""

    run_id: str
    path: Path
    config: dict[str, Any]
    classes: list[str]
    class_counts: list[int]
    attacks: dict[str, dict[str, Any]]
    test_profile: str = "balanced"  # eval.json's test set: balanced, or lt (the run's UR applied to it)
    n_test: int = 0  # test images of eval.json
    #: the results of every protocol (radius, step, precision, test images), the run's own (``attacks``) first
    blocks: tuple[Block, ...] = ()


class _Unusable(Exception):
    """A finished run whose records cannot be read; the message is the reason."""


def scan(results_dir: str | Path, checkpoint: str = "last",
         run_ids: Collection[str] | None = None) -> tuple[list[Run], list[RunProblem]]:
    """Read every run folder (one holding config.json, at any depth) under ``results_dir``, sorted by path;
    only the folders named in ``run_ids`` when it is given."""
    if checkpoint not in EVAL_FILES:
        raise InputError(f"checkpoint must be one of {', '.join(EVAL_FILES)}, got {checkpoint!r}")
    root = Path(results_dir)
    if not root.is_dir():
        raise InputError(f"results directory {root} does not exist")
    runs, problems = [], []
    for folder in sorted(path.parent for path in root.rglob("config.json")):
        if run_ids is not None and folder.name not in run_ids:
            continue
        item = _read_run(folder, EVAL_FILES[checkpoint])
        (runs if isinstance(item, Run) else problems).append(item)
    return runs, problems


def collect(results_dir: str | Path, checkpoint: str = "last") -> pd.DataFrame:
    """One row per (finished run, attack); accuracies are fractions as in eval.json.

    Columns: ``COLUMNS``. ``method_label`` is the method plus the parameters that tell its runs
    apart (see ``labels.method_labels``). Raises BenchError when no run is finished.
    """
    runs, problems = scan(results_dir, checkpoint)
    return runs_frame(runs, results_dir, problems)


def problem_runs(results_dir: str | Path, checkpoint: str = "last") -> list[RunProblem]:
    """Runs that are not done (partial, locked, failed), or whose records are unreadable (failed).

    As in the grid, ``done`` wins over a ``failed`` marker (a rerun finished).
    """
    return scan(results_dir, checkpoint)[1]


def runs_frame(runs: list[Run], results_dir: str | Path, problems: Sequence[RunProblem] = ()) -> pd.DataFrame:
    """The ``collect`` frame of already scanned runs; without any, an error that names unreadable records."""
    if not runs:
        unreadable = [p for p in problems if p.status == UNREADABLE]
        if unreadable:
            raise InputError(f"no usable finished runs under {results_dir}: {len(unreadable)} finished run(s) "
                             f"have unreadable records, e.g. {unreadable[0].reason}")
        raise InputError(f"no finished runs under {results_dir}; run `bench run` or `bench grid` first")
    protocols = {r.run_id: run_protocol(r.path, r.n_test) for r in runs}
    labels = method_labels({r.run_id: {**r.config, **protocols[r.run_id]} for r in runs})
    rows = []
    for run in sorted(runs, key=lambda r: _run_sort_key(r, labels[r.run_id])):
        c = run.config
        trained_on = training_devices(run)
        for attack in sorted(run.attacks, key=attack_sort_key):
            res = run.attacks[attack]
            rows.append({
                "run_id": run.run_id, "dataset": c["dataset"], "arch": c["arch"], "ur": float(c["ur"]),
                "method": c["method"], "method_label": labels[run.run_id], "seed": int(c["seed"]),
                "precision": protocols[run.run_id]["precision"],
                "test_profile": run.test_profile, "attack": attack, **{k: float(res[k]) for k in _ATTACK_FIELDS},
                "per_class_acc": [float(v) for v in res["per_class_acc"]],
                "trained_on": trained_on, "eval_device": str(res.get("device", NOT_RECORDED)),
                "per_class_total": res.get("per_class_total"), "correct": _correct(res),
                "classes": run.classes, "class_counts": run.class_counts,
            })
    return pd.DataFrame(rows, columns=COLUMNS)


def training_devices(run: Run) -> str:
    """The devices that trained the run's epochs (metrics.jsonl ``device``), in order, joined by " + "."""
    metrics = load_metrics(run)
    if metrics is None or "device" not in metrics:
        return NOT_RECORDED
    devices = [d for d in metrics["device"].unique() if isinstance(d, str)]
    return " + ".join(devices) or NOT_RECORDED


def _correct(res: dict[str, Any]) -> np.ndarray | None:
    """Per-image correctness (images grouped by class), or None for records without ``correct_bits``."""
    bits, totals = res.get("correct_bits"), res.get("per_class_total")
    if not isinstance(bits, str) or not isinstance(totals, list):
        return None
    try:
        return unpack_correct(bits, sum(totals))
    except (ValueError, TypeError):
        return None


def _run_sort_key(run: Run, label: str) -> tuple:
    c = run.config
    return (c["dataset"], c["arch"], float(c["ur"]), method_sort_key(label), int(c["seed"]), run.run_id)


def load_metrics(run: Run) -> pd.DataFrame | None:
    """The run's ``metrics.jsonl`` as a frame (one row per epoch, the last line of a repeated epoch wins).

    Lines that do not parse (a line cut by a kill) are ignored; None when nothing is readable.
    """
    try:
        lines = (run.path / "metrics.jsonl").read_text(errors="replace").splitlines()
    except OSError:
        return None
    records = []
    for line in lines:
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict) and "epoch" in record:
            records.append(record)
    if not records:
        return None
    return pd.DataFrame(records).drop_duplicates("epoch", keep="last").sort_values("epoch", ignore_index=True)


def _read_run(folder: Path, eval_name: str) -> Run | RunProblem:
    status = store.run_status(folder)
    if status == "failed":
        return RunProblem(folder.name, status, _one_line(store.failure_message(folder)))
    if status != "done":
        return RunProblem(folder.name, status, _progress(folder))
    try:
        meta, record = _load_json(folder / "config.json"), _load_json(folder / eval_name)
        return _make_run(folder, meta, record, eval_name)
    except _Unusable as e:
        return RunProblem(folder.name, UNREADABLE, str(e))


def _one_line(message: str) -> str:
    """A failure message on one line: a traceback's last line, else the lines joined; at most 300 chars."""
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    if not lines:
        return "failed (empty `failed` file)"
    text = lines[-1] if lines[0].startswith("Traceback") else " ".join(lines)
    return text if len(text) <= 300 else "…" + text[-299:]


def _progress(folder: Path) -> str:
    metrics = folder / "metrics.jsonl"
    logged = sum(1 for line in metrics.read_text(errors="replace").splitlines() if line.strip()) \
        if metrics.exists() else 0
    try:
        total = json.loads((folder / "config.json").read_text())["config"]["epochs"]
    except (OSError, ValueError, KeyError, TypeError):
        total = "?"
    return f"no `done` marker ({logged} of {total} epochs in metrics.jsonl)"


def _load_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise _Unusable(f"{path} not found; rerun `bench eval {path.parent}`") from None
    except (OSError, ValueError) as e:
        raise _Unusable(f"unreadable {path} ({e}); rerun `bench eval {path.parent}` or delete the run") from None


def _field(record: Any, key: str, where: str) -> Any:
    if not isinstance(record, dict) or key not in record:
        raise _Unusable(f"{where} lacks {key!r}")
    return record[key]


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _make_run(folder: Path, meta: Any, record: Any, eval_name: str) -> Run:
    config = _field(meta, "config", "config.json")
    if "external" not in meta:  # a run from before a field existed ran with its default
        config = {**LATE_DEFAULTS, **config}
    for key in _CONFIG_FIELDS:
        _field(config, key, "config.json config")
    if not (_is_number(config["ur"]) and isinstance(config["seed"], int)):
        raise _Unusable("config.json: ur must be a number and seed a whole number")
    classes, counts = _field(meta, "classes", "config.json"), _field(meta, "class_counts", "config.json")
    if not (isinstance(classes, list) and isinstance(counts, list) and len(classes) == len(counts)
            and all(isinstance(n, int) for n in counts)):
        raise _Unusable("config.json: classes and class_counts (whole numbers) must be lists of one length")
    _field(record, "attacks", eval_name)
    try:
        results = EvalResults.read(record, _number(config, "eps"), _number(config, "step_size"))
    except MalformedResults as err:
        raise _Unusable(f"{folder / eval_name}: {err}; delete that part or the file and rerun `bench eval`") from None
    blocks = results.blocks()
    if results.primary is None or not results.primary.attacks:
        others = f" (only at {blocks[0].protocol.label()})" if blocks else ""
        raise _Unusable(f"{folder / eval_name} has no attacks at the run's own eps {config['eps']:g} in fp32{others}; "
                        "run `bench eval` on it")
    for block in blocks:
        _check_attacks(block.attacks, eval_name if block is results.primary else
                       f"{eval_name} ({block.protocol.label()})", len(classes))
    return Run(folder.name, folder, config, [str(c) for c in classes], [int(n) for n in counts],
               results.primary.attacks, results.primary.protocol.test_profile, results.primary.protocol.n_test,
               tuple(blocks))


def _number(config: dict[str, Any], key: str) -> float:
    value = _field(config, key, "config.json config")
    if not _is_number(value):
        raise _Unusable(f"config.json: {key} must be a number")
    return float(value)


def _check_attacks(attacks: dict[str, Any], where: str, n_classes: int) -> None:
    for name, res in attacks.items():
        what = f"{where} attack {name!r}"
        per_class = _field(res, "per_class_acc", what)
        if not all(_is_number(_field(res, key, what)) for key in _ATTACK_FIELDS):
            raise _Unusable(f"{what}: accuracies must be numbers")
        if not (isinstance(per_class, list) and len(per_class) == n_classes and all(map(_is_number, per_class))):
            raise _Unusable(f"{what}: per_class_acc must hold {n_classes} numbers (one per class)")
