"""Numbers of two tiny runs (pgd-at, reat) that later code must reproduce exactly.

`tests/data/reference_runs.json` holds them as computed by the training core before the Method
interface gained ``begin_epoch`` and ``attack_steps``. Regenerate only when a change of results is
intended, with one thread from the repository root:

    python tests/reference_runs.py tests/data/reference_runs.json
"""

from __future__ import annotations

import json
import pickle
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench.core.progress import Progress
from bench.data.cifar import write_synthetic_cifar10
from bench.evaluation.settings import eval_settings
from bench.runs.runner import run_one
from bench.training.config import build_config

METHODS = ("pgd-at", "reat")
FIELDS = {"epochs": 3, "steps": 2, "batch_size": 32, "epoch_eval_n": 50, "lr": 0.05, "precision": "fp32"}
EVALUATION = eval_settings({"n": 100})
NUMBERS = ("acc", "per_class_correct", "per_class_total", "head", "mid", "tail", "worst", "balanced", "confusion")


def write_learnable_cifar10(root: Path) -> None:
    """The tiny CIFAR-10 fixture with images whose brightness depends on the class, so models learn."""
    folder = write_synthetic_cifar10(root, train_per_class=40, test_per_class=10) / "cifar-10-batches-py"
    rng = np.random.RandomState(1)
    for path in folder.glob("*_batch*"):
        batch = pickle.loads(path.read_bytes())
        level = np.asarray(batch["labels"])[:, None] * 22 + 20
        noise = rng.randint(-40, 41, size=batch["data"].shape)
        batch["data"] = np.clip(level + noise, 0, 255).astype(np.uint8)
        path.write_bytes(pickle.dumps(batch))


def reference_numbers(root: Path) -> dict[str, Any]:
    """Per method: every number of eval.json's attacks and the per-epoch training losses."""
    torch.set_num_threads(1)
    write_learnable_cifar10(root / "data")
    out: dict[str, Any] = {}
    for method in METHODS:
        cfg = build_config(method=method, dataset="cifar10", ur=10, preset="smoke", overrides=FIELDS)
        record = run_one(cfg, EVALUATION, root / "results" / cfg.run_id, data_root=str(root / "data"),
                         device=torch.device("cpu"), progress=Progress(False))
        metrics = [json.loads(line) for line in (root / "results" / cfg.run_id / "metrics.jsonl").open()]
        out[method] = {
            "attacks": {key: {n: res[n] for n in NUMBERS} for key, res in record["attacks"].items()},
            "losses": [m["loss"] for m in metrics],
            "test_pgd20_acc": [m["test_pgd20_acc"] for m in metrics],
        }
    return out


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as tmp:
        numbers = reference_numbers(Path(tmp))
    Path(sys.argv[1]).write_text(json.dumps(numbers, indent=1) + "\n")
