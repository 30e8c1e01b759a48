"""Atomic file writes: a temporary file in the target folder, then ``os.replace``."""

from __future__ import annotations

import io
import os
import uuid
from pathlib import Path

from matplotlib.figure import Figure

#: formats every figure is saved in
FIGURE_FORMATS = ("png", "pdf")


def write_bytes(path: Path, data: bytes) -> Path:
    """Write ``data`` so that readers see the old file or the new one, never a partial one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(tmp, "xb") as f:
            f.write(data)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def write_text(path: Path, text: str) -> Path:
    """Atomically write UTF-8 text."""
    return write_bytes(path, text.encode("utf-8"))


def save_figure(fig: Figure, stem: Path) -> list[Path]:
    """Save ``fig`` as ``stem.png`` and ``stem.pdf`` (atomically); return the paths, PNG first."""
    paths = []
    for fmt in FIGURE_FORMATS:
        buf = io.BytesIO()
        metadata = {"CreationDate": None} if fmt == "pdf" else None  # reproducible PDFs
        fig.savefig(buf, format=fmt, dpi=150, bbox_inches="tight", metadata=metadata)
        paths.append(write_bytes(stem.with_name(f"{stem.name}.{fmt}"), buf.getvalue()))
    return paths
