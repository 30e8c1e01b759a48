"""`bench run` reports exactly the runs it ran, whatever else lies in its results folder."""

from __future__ import annotations

import pytest
from click.testing import CliRunner
from conftest import TINY
from test_report import run_id, write_run

from bench.cli import main


@pytest.mark.slow
def test_bench_run_reports_only_its_own_runs(tmp_path, cifar_root):
    results = tmp_path / "results"
    write_run(results / "reference", "pgd-at", 0)  # a finished run of another command
    args = ["run", "--out", str(results), "--report-dir", str(tmp_path / "report"), "--data-root", str(cifar_root),
            "--methods", "pgd-at", *TINY]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "report of this run written to" in result.output
    index = (tmp_path / "report" / "index.md").read_text()
    assert "1 finished runs used" in index and run_id("pgd-at", 0) not in index
    assert "| fp32 |" in index or "| bf16 |" in index  # the precision it trained in
