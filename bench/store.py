"""Results layout and atomic writes: one folder per run under the results directory."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from bench.errors import BenchError

CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.jsonl"
DONE_FILE = "done"
FAILED_FILE = "failed"
CKPT_DIR = "ckpt"


def eval_file(checkpoint: str) -> str:
    """``eval.json`` for the last checkpoint, ``eval-best.json`` for the best one."""
    return "eval.json" if checkpoint == "last" else f"eval-{checkpoint}.json"


def _atomic(path: Path, write: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_bytes(path: Path, data: bytes) -> Path:
    """Write ``data`` atomically: readers see the old file or the new one, never a partial one."""
    _atomic(path, lambda fh: fh.write(data))
    return path


def write_text(path: Path, text: str) -> Path:
    """Write UTF-8 ``text`` atomically (temp file in the same folder, then rename)."""
    return write_bytes(path, text.encode("utf-8"))


def write_json(path: Path, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2) + "\n")


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    write_text(path, "".join(json.dumps(r) + "\n" for r in rows))


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise BenchError(f"cannot read {path} ({err}); delete it and rerun") from None


def save_checkpoint(obj: dict[str, Any], path: Path) -> None:
    """torch.save atomically."""
    _atomic(path, lambda fh: torch.save(obj, fh))


def load_checkpoint(path: Path, device: torch.device | str = "cpu") -> dict[str, Any]:
    """torch.load with weights_only=True; a damaged file is a one-line error naming the fix."""
    try:
        return torch.load(path, map_location=device, weights_only=True)
    except Exception as err:
        raise BenchError(
            f"checkpoint {path} is corrupt or unreadable ({type(err).__name__}); delete it or rerun with --force"
        ) from None


def is_done(run_dir: Path) -> bool:
    return (run_dir / DONE_FILE).exists()


def mark_done(run_dir: Path) -> None:
    write_text(run_dir / DONE_FILE, "")
    (run_dir / FAILED_FILE).unlink(missing_ok=True)


def mark_failed(run_dir: Path, message: str) -> None:
    if run_dir.exists():
        write_text(run_dir / FAILED_FILE, message + "\n")


def iter_runs(results_dir: Path) -> Iterator[Path]:
    """Every run folder (one holding config.json) below ``results_dir``."""
    for config in sorted(Path(results_dir).rglob(CONFIG_FILE)):
        yield config.parent
