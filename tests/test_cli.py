"""`bench run` / `bench list` end to end through click's CliRunner, and every bad-input case."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from bench.cli import main
from bench.cli.list_cmd import grid_summary
from bench.grid.spec import shipped_grid_text, shipped_grids


def run(args: list[str]):
    return CliRunner().invoke(main, args)


def only_run(out: Path) -> Path:
    (run_dir,) = [p for p in out.iterdir() if p.is_dir()]
    return run_dir


@pytest.mark.slow
def test_run_writes_every_file(tmp_path, tiny_args):
    out = tmp_path / "results"
    report = tmp_path / "report"
    result = run(["run", "--methods", "pgd-at", "--out", str(out), *tiny_args, "--report", "--report-dir", str(report)])
    assert result.exit_code == 0, result.output
    assert "PGD-20" in result.output and "pgd-at" in result.output
    assert (report / "index.md").exists() and "pgd-at" in (report / "index.md").read_text()
    run_dir = only_run(out)
    assert run_dir.name.startswith("cifar10-ur10-cnn-small-pgd-at-smoke-s0-")
    config = json.loads((run_dir / "config.json").read_text())
    assert config["config"]["method"] == "pgd-at" and config["class_counts"][0] == 20
    assert len((run_dir / "metrics.jsonl").read_text().splitlines()) == 1
    record = json.loads((run_dir / "eval.json").read_text())
    assert set(record["attacks"]) == {"clean", "pgd20"}
    pgd20 = record["attacks"]["pgd20"]
    assert pgd20["params"]["steps"] == 20 and len(pgd20["per_class_acc"]) == 10
    assert sum(pgd20["per_class_total"]) == record["n_test"] == 20
    assert {"ltbench", "torch", "pyautoattack"} <= set(record["versions"])
    ckpt = torch.load(run_dir / "ckpt" / "last.pt", weights_only=True)
    assert ckpt["epoch"] == 0
    assert (run_dir / "done").exists()


@pytest.mark.slow
def test_finished_run_is_not_retrained_unless_forced(tmp_path, tiny_args):
    out = tmp_path / "results"
    assert run(["run", "--out", str(out), *tiny_args]).exit_code == 0
    done_mtime = (only_run(out) / "done").stat().st_mtime_ns
    again = run(["run", "--out", str(out), *tiny_args])
    assert "done earlier" in again.output
    assert (only_run(out) / "done").stat().st_mtime_ns == done_mtime
    forced = run(["run", "--out", str(out), "--force", *tiny_args])
    assert forced.exit_code == 0 and "done earlier" not in forced.output


@pytest.mark.slow
def test_overrides_change_the_run_hash(tmp_path, tiny_args):
    out = tmp_path / "results"
    assert run(["run", "--out", str(out), *tiny_args]).exit_code == 0
    assert run(["run", "--out", str(out), "--set", "lr=0.05", *tiny_args]).exit_code == 0
    names = sorted(p.name for p in out.iterdir())
    assert len(names) == 2 and names[0].rsplit("-", 1)[0] == names[1].rsplit("-", 1)[0]


def test_list_shows_every_registry():
    result = run(["list"])
    assert result.exit_code == 0
    for name in ("pgd-at", "cnn-small", "wrn-34-10", "fashion-mnist", "cifar100", "paper", "quick", "smoke", "awp",
                 "robustlt+METHOD", "robustlt_alpha", "robustlt_beta"):
        assert name in result.output


def test_list_grids_shows_every_shipped_grid_with_its_run_count():
    result = run(["list", "grids"])
    assert result.exit_code == 0
    rows = {line.split("│")[1].strip(): line.split("│")[2].strip() for line in result.output.splitlines()
            if line.startswith("│") and line.split("│")[1].strip()}
    assert set(rows) == set(shipped_grids())
    assert rows["fmnist-reference"] == "72" and rows["robustlt-parts"] == "9" and rows["paper-main"] == "108"
    assert grid_summary("fmnist-eps-curve", shipped_grid_text("fmnist-eps-curve")) == \
        "robust accuracy against the attack radius."


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--methods", "nope"], "unknown method 'nope'; choose one of: "),
        (["--arch", "vgg"], "unknown architecture 'vgg'; choose one of: cnn-small"),
        (["--dataset", "mnist"], "unknown dataset 'mnist'; choose one of: cifar10, cifar100, fashion-mnist"),
        (["--preset", "long"], "unknown preset 'long'; choose one of: paper, quick, smoke"),
        (["--ur", "0.5"], "UR must be a number >= 1"),
        (["--ur", "abc"], "UR must be a number >= 1"),
        (["--epochs", "0"], "epochs must be positive"),
        (["--eps", "-0.1"], "eps must not be negative"),
        (["--set", "pgd-at.beta=3"], "has no parameter 'beta'"),
        (["--set", "nofield=3"], "unknown config field"),
    ],
)
def test_bad_input_is_one_line_exit_2_nothing_written(tmp_path, args, message):
    out = tmp_path / "results"
    result = run(["run", "--out", str(out), "--no-progress", *args])
    assert result.exit_code == 2
    assert message in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert not out.exists()


@pytest.mark.slow
def test_corrupt_checkpoint_is_a_clear_error(tmp_path, tiny_args):
    out = tmp_path / "results"
    assert run(["run", "--out", str(out), "--epochs", "2", *tiny_args]).exit_code == 0
    run_dir = only_run(out)
    (run_dir / "done").unlink()
    (run_dir / "ckpt" / "last.pt").write_bytes(b"garbage")
    result = run(["run", "--out", str(out), "--epochs", "2", *tiny_args])
    assert result.exit_code == 1
    assert "checkpoint" in result.output and "corrupt" in result.output
    assert (run_dir / "failed").exists() and not (run_dir / "done").exists()


def test_python_m_bench_is_the_bench_command():
    args = ["run", "--no-such-option"]
    module = subprocess.run([sys.executable, "-m", "bench", *args], capture_output=True, text=True)
    command = CliRunner().invoke(main, args, prog_name="bench")
    assert (module.returncode, module.stdout + module.stderr) == (command.exit_code, command.output)
    assert module.returncode == 2 and "(see `bench run --help`)" in module.stderr
