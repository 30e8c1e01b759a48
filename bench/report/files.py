"""Figure files: every figure saved atomically as PNG and PDF."""

from __future__ import annotations

import io
from pathlib import Path

from matplotlib.figure import Figure

from bench.core.store import write_bytes

#: formats every figure is saved in
FIGURE_FORMATS = ("png", "pdf")


def save_figure(fig: Figure, stem: Path) -> list[Path]:
    """Save ``fig`` as ``stem.png`` and ``stem.pdf`` (atomically); return the paths, PNG first."""
    paths = []
    for fmt in FIGURE_FORMATS:
        buf = io.BytesIO()
        metadata = {"CreationDate": None} if fmt == "pdf" else None  # reproducible PDFs
        fig.savefig(buf, format=fmt, dpi=150, bbox_inches="tight", metadata=metadata)
        paths.append(write_bytes(stem.with_name(f"{stem.name}.{fmt}"), buf.getvalue()))
    return paths
