"""The committed Fashion-MNIST-LT report (reports/fmnist-lt) is what `bench report` makes of the committed
results (results/reference): regenerated into a temporary folder, its tables and index match byte for byte."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from bench.report import write_report

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "results" / "reference"
REPORT = ROOT / "reports" / "fmnist-lt"
#: run files the report reads (checkpoints and locks are not committed)
RUN_FILES = ("config.json", "metrics.jsonl", "eval.json", "analysis.json", "analysis-tsne.npz", "done")


def files(folder: Path, suffixes: tuple[str, ...]) -> dict[str, Path]:
    return {p.relative_to(folder).as_posix(): p for p in sorted(folder.rglob("*"))
            if p.is_file() and p.suffix in suffixes}


@pytest.fixture(scope="module")
def regenerated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The report rebuilt from a copy of the finished runs' files, at the same relative place.

    Only finished runs are committed; a working tree may also hold runs in progress, which are left out.
    """
    root = tmp_path_factory.mktemp("checkout")
    finished = {marker.parent for marker in RESULTS.rglob("done")}
    for path in RESULTS.rglob("*"):
        if path.is_file() and path.name in RUN_FILES and path.parent in finished:
            target = root / "results" / "reference" / path.relative_to(RESULTS)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target)
    out = root / "reports" / "fmnist-lt"
    write_report(root / "results" / "reference", out)
    return out


def test_committed_results_and_report_exist() -> None:
    assert (REPORT / "index.md").is_file(), "reports/fmnist-lt/index.md is missing"
    assert list(RESULTS.rglob("done")), "results/reference holds no finished run"


def test_tables_and_index_regenerate_byte_for_byte(regenerated: Path) -> None:
    committed, fresh = files(REPORT, (".md", ".csv", ".tex")), files(regenerated, (".md", ".csv", ".tex"))
    assert sorted(committed) == sorted(fresh)
    for name, path in committed.items():
        assert path.read_bytes() == fresh[name].read_bytes(), f"{name} differs from the regenerated report"


def test_every_figure_is_regenerated(regenerated: Path) -> None:
    assert sorted(files(REPORT, (".png",))) == sorted(files(regenerated, (".png",)))


@pytest.mark.parametrize("ur", [100, 10])
def test_readme_shows_the_committed_tables(ur: int) -> None:
    """The README's Results tables are the report's UR 100 and UR 10 tables, not copies that drifted."""
    blocks = (REPORT / "tables" / f"accuracy_fashion-mnist_cnn-small_ur{ur}.md").read_text().split("\n\n")
    table = next(block for block in blocks if block.startswith("|"))
    assert table in (ROOT / "README.md").read_text()
