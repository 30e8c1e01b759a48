"""The feature-space part of `bench report`, from hand-written analysis.json files on a fake results tree."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from test_report import CLASSES, COUNTS, GROUP100, PER_CLASS, markdown_rows, run_id, write_run

from bench.analysis.metrics import class_geometry
from bench.evaluation.metrics import class_groups
from bench.report import write_report

N_PER_CLASS = 30


def analysis_record(folder: Path, seed: int, spread: float, attack: str = "pgd20") -> dict:
    """An analysis.json of 4 Gaussian clusters of radius ``spread`` (the attacked ones twice as wide)."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(4), N_PER_CLASS)
    centres = 5 * np.eye(4, 8)
    conditions, maps = {}, {"labels": labels}
    for key, scale in (("clean", spread), (attack, 2 * spread)):
        features = centres[labels] + scale * rng.normal(size=(labels.size, 8))
        conditions[key] = {"model_accuracy": 0.5, "eval_check": "not comparable: test",
                           **class_geometry(features, labels, COUNTS)}
        maps[key] = rng.normal(size=(labels.size, 2)).astype(np.float32)
    np.savez(folder / "analysis-tsne.npz", **maps)
    return {
        "run_id": folder.name, "params": {
            "analysis_version": 1, "checkpoint": "last", "epoch": 1, "n": 120, "n_test": 120,
            "subset_rule": "first ceil(n/C) test images of every class", "attack": attack,
            "attack_params": {"eps": 0.1}, "batch_size": 500,
            "embedding": {"perplexity": 30.0, "pca_dims": 50, "seed": 0}},
        "classes": CLASSES, "class_counts": COUNTS, "groups": class_groups(COUNTS), "reat_tail_classes": [3],
        "conditions": conditions, "files": {"tsne": "analysis-tsne.npz", "features": None},
    }


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, dict]]:
    root = tmp_path_factory.mktemp("results")
    records = {}
    for method, seed, ur in PER_CLASS:
        if ur != 100:  # one group is enough here; fewer figures keep the test fast
            continue
        folder = write_run(root, method, seed, ur)
        records[folder.name] = analysis_record(folder, seed, 1.0 if method == "pgd-at" else 0.5)
        (folder / "analysis.json").write_text(json.dumps(records[folder.name]))
    odd = write_run(root, "rbl", 7, eval_text=(root / run_id("rbl", 0) / "eval.json").read_text())
    (odd / "analysis.json").write_text(json.dumps(analysis_record(odd, 7, 0.5, attack="fgsm")))
    out = tmp_path_factory.mktemp("reports") / "demo"
    write_report(root, out)
    return out, records


def test_table_holds_group_means_over_seeds(report: tuple[Path, dict[str, dict]]) -> None:
    out, records = report
    rows = markdown_rows(out / "tables" / f"feature-space_{GROUP100}.md")
    assert set(rows) == {"pgd-at", "rbl"}  # keyed by the first column; both conditions are rows below
    text = (out / "tables" / f"feature-space_{GROUP100}.md").read_text()
    values = [records[run_id("pgd-at", s)]["conditions"]["clean"]["groups"]["separation"]["tail"] for s in (0, 1)]
    mean, std = np.mean(values), np.std(values, ddof=1)
    assert "| pgd-at | Clean | " in text and f"{mean:.2f} ± {std:.2f}" in text
    csv = (out / "tables" / f"feature-space_{GROUP100}.csv").read_text().splitlines()
    assert csv[0].startswith("dataset,arch,ur,method,condition,sep_head_mean")
    assert len(csv) == 1 + 4 and "n_seeds" in csv[0]
    assert "\\begin{tabular}" in (out / "tables" / f"feature-space_{GROUP100}.tex").read_text()


def test_wider_clusters_are_less_separable_in_the_table(report: tuple[Path, dict[str, dict]]) -> None:
    out, _ = report
    csv = (out / "tables" / f"feature-space_{GROUP100}.csv").read_text().splitlines()
    header = csv[0].split(",")
    rows = {(r.split(",")[3], r.split(",")[4]): r.split(",") for r in csv[1:]}
    col = header.index("sep_tail_mean")
    assert float(rows[("rbl", "Clean")][col]) > float(rows[("pgd-at", "Clean")][col])
    assert float(rows[("pgd-at", "Clean")][col]) > float(rows[("pgd-at", "PGD-20")][col])


def test_figures_and_captions_name_the_runs(report: tuple[Path, dict[str, dict]]) -> None:
    out, _ = report
    assert (out / "figures" / f"tsne_{GROUP100}_s0.png").exists()
    assert (out / "figures" / f"feature-separability_{GROUP100}.pdf").exists()
    index = (out / "index.md").read_text()
    assert "## Feature space" in index and "docs/analysis.md" in index
    tsne_line = next(line for line in index.splitlines() if f"tsne_{GROUP100}_s0.png" in line)
    assert run_id("pgd-at", 0) in tsne_line and run_id("rbl", 0) in tsne_line
    assert run_id("pgd-at", 1) not in tsne_line
    assert "tail classes (dress)" in tsne_line
    assert f"{run_id('rbl', 7)} was analysed on other images or with another attack" in index

