"""Results layout, run states and atomic writes: one folder per run under the results directory.

A run folder ``RESULTS/<run_id>/`` holds ``config.json`` (the run config and class counts), ``metrics.jsonl``
(one line per epoch), ``ckpt/last.pt`` and ``ckpt/best.pt``, ``eval.json`` / ``eval-best.json``, and the
markers ``lock`` (a process works on it), ``done`` and ``failed`` (the error, then its traceback).
"""

from __future__ import annotations

import errno
import io
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from bench.core.errors import BenchError
from bench.core.locks import LOCK_FILE, is_stale, read_lock

CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.jsonl"
DONE_FILE = "done"
FAILED_FILE = "failed"
CKPT_DIR = "ckpt"
#: the states of a run folder, as ``run_status`` reports them
STATES = ("todo", "partial", "done", "failed", "locked")


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
    except BaseException as err:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT):
            raise BenchError(f"cannot write {path}: the disk is full ({err.strerror}); the previous version is "
                             "kept: free disk space and rerun the same command") from None
        if isinstance(err, OSError) and err.errno in (errno.EROFS, errno.EIO):
            raise BenchError(f"cannot write {path} ({err.strerror}); the previous version is kept: fix the "
                             "disk and rerun the same command") from None
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
        raise BenchError(f"cannot read {path} ({type(err).__name__}: {err}); delete it and rerun, "
                         "or rerun with --force") from None


def read_jsonl(path: Path) -> list[Any]:
    """The lines of a JSON-lines file ([] when absent); a damaged line is a one-line error naming the fix."""
    if not path.exists():
        return []
    rows = []
    for number, line in enumerate(path.read_text(errors="replace").splitlines(), start=1):
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            raise BenchError(f"{path} is corrupt (line {number}); delete it to rebuild it from the checkpoint, "
                             "or rerun with --force to retrain") from None
    return rows


def save_checkpoint(obj: dict[str, Any], path: Path) -> None:
    """torch.save atomically; serialised in memory first, so a full disk is an OSError named as such."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    write_bytes(path, buffer.getvalue())


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


def mark_failed(run_dir: Path, message: str, details: str = "") -> None:
    """Write the ``failed`` marker: the one-line message, then ``details`` (the traceback).

    Best effort: on a full disk the run stays ``partial`` and the error still reaches the caller.
    """
    if run_dir.exists():
        try:
            write_text(run_dir / FAILED_FILE, message + "\n" + (f"\n{details.rstrip()}\n" if details else ""))
        except (BenchError, OSError):
            pass


def failure_message(run_dir: Path) -> str:
    """The first line of the ``failed`` marker (the last line of a bare traceback)."""
    try:
        lines = [line.strip() for line in (run_dir / FAILED_FILE).read_text(errors="replace").splitlines()]
    except OSError:
        return ""
    lines = [line for line in lines if line]
    if not lines:
        return "failed (empty `failed` file)"
    return lines[-1] if lines[0].startswith("Traceback") else lines[0]


def trained_precision(run_dir: Path) -> str:
    """The precision the run trained in: metrics.jsonl's per-epoch ``precision`` (joined by " + " if it changed),
    else "outside model" for an outside model's evaluation, else the config's when it is not ``auto`` (runs from
    before it was recorded), else "not recorded"."""
    precisions: list[str] = []
    path = Path(run_dir) / METRICS_FILE
    for line in path.read_text(errors="replace").splitlines() if path.exists() else []:
        try:
            value = json.loads(line).get("precision")
        except (json.JSONDecodeError, AttributeError):
            continue
        if isinstance(value, str) and value not in precisions:
            precisions.append(value)
    if precisions:
        return " + ".join(precisions)
    try:
        meta = json.loads((Path(run_dir) / CONFIG_FILE).read_text())
    except (OSError, ValueError):
        meta = None
    if isinstance(meta, dict) and "external" in meta:
        return "outside model"
    config = meta.get("config") if isinstance(meta, dict) else None
    configured = config.get("precision") if isinstance(config, dict) else None
    return configured if configured in ("fp32", "bf16") else "not recorded"


def is_external(run_dir: Path) -> bool:
    """Whether ``run_dir`` holds an outside model's evaluation (its config.json has ``external``)."""
    try:
        return "external" in read_json(Path(run_dir) / CONFIG_FILE)
    except (BenchError, OSError):
        return False


def run_status(run_dir: Path) -> str:
    """``done`` (wins over a stale failed marker), ``locked`` (a live process works on it), ``failed``,
    ``partial`` (started, not finished) or ``todo``."""
    run_dir = Path(run_dir)
    if is_done(run_dir):
        return "done"
    lock = run_dir / LOCK_FILE
    holder = read_lock(lock)
    if holder is not None and not is_stale(lock, holder):
        return "locked"
    if (run_dir / FAILED_FILE).exists():
        return "failed"
    if (run_dir / CONFIG_FILE).exists():
        return "partial"
    return "todo"


def remove_temp_files(run_dir: Path) -> None:
    """Delete temporary files that a killed write left behind (call only while holding the run's lock)."""
    for tmp in Path(run_dir).rglob(".*.tmp"):
        if not tmp.name.startswith(f".{LOCK_FILE}."):  # another process's lock being created
            tmp.unlink(missing_ok=True)


def iter_runs(results_dir: Path) -> Iterator[Path]:
    """Every run folder (one holding config.json) below ``results_dir``."""
    for config in sorted(Path(results_dir).rglob(CONFIG_FILE)):
        yield config.parent
