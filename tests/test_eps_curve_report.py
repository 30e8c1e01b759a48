"""The committed robustness-against-eps report (reports/eps-curve) is what `bench report` makes of the committed
fmnist-eps-curve results (results/eps-curve), and the README shows its figure."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from bench.grid.spec import expand, load_grid
from bench.report import write_report

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "results" / "eps-curve"
REPORT = ROOT / "reports" / "eps-curve"
FIGURE = "figures/acc-vs-eps-pgd20_fashion-mnist_cnn-small_ur100"


@pytest.fixture(scope="module")
def regenerated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The report rebuilt from a copy of the committed runs, at the same relative place."""
    root = tmp_path_factory.mktemp("checkout")
    shutil.copytree(RESULTS, root / "results" / "eps-curve")
    out = root / "reports" / "eps-curve"
    write_report(root / "results" / "eps-curve", out)
    return out


def test_every_run_of_the_grid_has_pgd20_at_every_radius() -> None:
    spec = load_grid("fmnist-eps-curve")
    for cfg in expand(spec):
        record = json.loads((RESULTS / cfg.run_id / "eval.json").read_text())
        radii = {record["eps"], *(b["eps"] for b in record["protocols"] if "pgd20" in b["attacks"])}
        assert radii == set(spec.eval_eps), cfg.run_id
        assert list(record["attacks"]) == ["clean", "pgd20"] and record["n_test"] == 1000


def test_tables_and_index_regenerate_byte_for_byte(regenerated: Path) -> None:
    committed = sorted(p.relative_to(REPORT) for p in REPORT.rglob("*") if p.suffix in (".md", ".csv", ".tex"))
    fresh = sorted(p.relative_to(regenerated) for p in regenerated.rglob("*") if p.suffix in (".md", ".csv", ".tex"))
    assert committed == fresh
    for path in committed:
        assert (REPORT / path).read_text() == (regenerated / path).read_text(), path
    assert (regenerated / f"{FIGURE}.png").is_file() and f"({FIGURE}.png)" in (REPORT / "index.md").read_text()


def test_readme_shows_the_figure() -> None:
    assert f"reports/eps-curve/{FIGURE}.png" in (ROOT / "README.md").read_text()
