"""Long-tailed test sets (test_profile=lt): selection, proportional subsets, eval.json and the report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from bench.cli import main
from bench.core.errors import InputError
from bench.data.datasets import load_dataset
from bench.data.longtail import long_tail_counts, long_tail_data, stratified_first_n
from bench.training.config import build_config


def test_lt_profile_applies_the_runs_ur_to_the_test_split(cifar_root: Path):
    full = load_dataset("cifar10", cifar_root, download=False)
    balanced = long_tail_data(full, 10)
    lt = long_tail_data(full, 10, test_profile="lt")
    assert balanced.test_profile == "balanced" and torch.equal(balanced.y_test, full.y_test)
    expected = long_tail_counts(10, 10, 10)  # the fixture's 10 test images per class are the test n_max
    assert torch.bincount(lt.y_test, minlength=10).tolist() == expected == [10, 7, 5, 4, 3, 2, 2, 1, 1, 1]
    assert lt.class_counts == balanced.class_counts  # the training set does not change
    assert torch.equal(long_tail_data(full, 10, test_profile="lt").x_test, lt.x_test)  # seeded selection
    with pytest.raises(InputError, match="test_profile"):
        long_tail_data(full, 10, test_profile="tail")


def test_subsets_keep_the_class_proportions():
    balanced = torch.arange(10).repeat(100)
    assert torch.bincount(balanced[stratified_first_n(balanced, 25, 10)]).tolist() == [3] * 10  # ceil(25/10)
    lt = torch.cat([torch.full((n,), c) for c, n in enumerate([400, 200, 100, 50, 10])])
    idx = stratified_first_n(lt, 38, 5)  # ceil(38 * n_c / 760)
    assert torch.bincount(lt[idx]).tolist() == [20, 10, 5, 3, 1]
    assert idx.tolist() == sorted(idx.tolist())


def test_config_rejects_unknown_profiles():
    assert build_config(method="pgd-at", overrides={"test_profile": "lt"}).test_profile == "lt"
    with pytest.raises(InputError, match="test_profile must be one of balanced, lt"):
        build_config(method="pgd-at", overrides={"test_profile": "tail"})


@pytest.mark.slow
def test_lt_run_records_the_profile_and_the_report_shows_balanced(tmp_path, tiny_args):
    out, report = tmp_path / "results", tmp_path / "report"
    result = CliRunner().invoke(main, ["run", "--methods", "pgd-at", "--out", str(out), *tiny_args,
                                       "--set", "test_profile=lt", "--eval-n", "1000", "--report",
                                       "--report-dir", str(report)])
    assert result.exit_code == 0, result.output
    (run_dir,) = [p for p in out.iterdir() if p.is_dir()]
    record = json.loads((run_dir / "eval.json").read_text())
    assert record["test_profile"] == "lt" and record["config"]["test_profile"] == "lt"
    assert record["attacks"]["clean"]["per_class_total"] == [10, 7, 5, 4, 3, 2, 2, 1, 1, 1]
    index = (report / "index.md").read_text()
    assert "· lt test set" in index and "Test set: **lt**" in index
    assert "Clean balanced" in index and "PGD-20 balanced" in index
