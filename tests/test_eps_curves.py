"""Robustness curves in the report: accuracy against eps from results at several radii (eval.json protocols)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from test_report import PER_CLASS, attack, run_id, write_run

from bench.evaluation.protocol import default_step
from bench.report import collect, write_report
from bench.report.collect import scan
from bench.report.figures import radius_frame
from bench.report.files import save_figure
from bench.report.labels import method_palette
from bench.report.plots import accuracy_vs_eps, style

GROUP100 = "fashion-mnist_cnn-small_ur100"
#: PGD-20 per-class accuracy at each extra radius: the run's own minus a drop that grows with eps
RADII = (0.05, 0.15)


def protocol(eps: float, per_class: list[float], *, n_test: int = 400, precision: str = "fp32") -> dict:
    return {"eps": eps, "step_size": default_step(eps, 0.1, 0.025), "precision": precision,
            "test_profile": "balanced", "n_test": n_test, "subset": "all",
            "attacks": {"pgd20": attack(per_class)}}


def add_radii(run_dir: Path) -> None:
    """PGD-20 at 0.05 and 0.15 on the run's own images, plus results that must stay off the curve."""
    path = run_dir / "eval.json"
    record = json.loads(path.read_text())
    own = record["attacks"]["pgd20"]["per_class_acc"]
    record["protocols"] = [protocol(eps, [min(1.0, a + 2 * (0.1 - eps)) for a in own]) for eps in RADII]
    record["protocols"] += [protocol(0.2, [0.0] * 4, n_test=40), protocol(0.2, [0.0] * 4, precision="bf16")]
    path.write_text(json.dumps(record))


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("results")
    for method, seed, ur in PER_CLASS:
        folder = write_run(root, method, seed, ur)
        if ur == 100:
            add_radii(folder)
    return root


def test_radius_frame_holds_the_runs_own_images_precision_and_step(tree: Path) -> None:
    runs, _ = scan(tree)
    frame = radius_frame(runs)
    one = frame[(frame["run_id"] == run_id("rbl", 1)) & (frame["attack"] == "pgd20")].set_index("eps")
    assert sorted(one.index) == [0.05, 0.1, 0.15], "results on other images or in bf16 stay off the curve"
    assert one.loc[0.1, "acc"] == pytest.approx(46.0) and one.loc[0.05, "tail"] == pytest.approx(42.0)
    assert set(frame["attack"]) == {"pgd20", "fgsm"} and (frame["train_eps"] == 0.1).all()
    assert set(frame[frame["run_id"] == run_id("rbl", 0, 10)]["eps"]) == {0.1}


def test_the_tables_read_the_runs_own_eps(tree: Path, tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    for method, seed, ur in PER_CLASS:
        write_run(plain, method, seed, ur)
    columns = ["run_id", "attack", "acc", "tail", "per_class_acc"]
    pd.testing.assert_frame_equal(collect(tree)[columns], collect(plain)[columns])


def test_report_draws_accuracy_against_eps_where_runs_have_two_radii(tree: Path, tmp_path: Path) -> None:
    index = write_report(tree, tmp_path / "report")
    figures = tmp_path / "report" / "figures"
    for suffix in ("png", "pdf"):
        assert (figures / f"acc-vs-eps-pgd20_{GROUP100}.{suffix}").stat().st_size > 0
    assert not list(figures.glob("acc-vs-eps-fgsm_*")), "FGSM has one radius only"
    assert not list(figures.glob("acc-vs-eps-*_ur10.*")), "the UR 10 runs were evaluated at their own eps only"
    text = index.read_text()
    assert f"(figures/acc-vs-eps-pgd20_{GROUP100}.png)" in text and "against the attack radius eps" in text


def test_the_eps_figure_is_deterministic(tree: Path, tmp_path: Path) -> None:
    runs, _ = scan(tree)
    data = radius_frame(runs)
    labels = {r.run_id: r.config["method"] for r in runs}
    data = data[data["attack"] == "pgd20"].assign(Method=data["run_id"].map(labels))
    palette = method_palette(pd.Series(sorted(set(labels.values()))))
    saved = []
    for name in ("a", "b"):
        with style():
            fig = accuracy_vs_eps(data, palette, "pgd20", [0.1], "PGD-20 accuracy vs eps")
        saved.append([p.read_bytes() for p in save_figure(fig, tmp_path / name)])
    assert saved[0] == saved[1]
