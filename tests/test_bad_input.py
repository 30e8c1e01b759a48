"""Bad input to every command: exit code 2 (1 for a missing device), one line on stderr naming the fix, and
no file created or changed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from bench.cli import main

GRID = 'datasets = ["fashion-mnist"]\narchs = ["cnn-small"]\nurs = [10]\nmethods = ["pgd-at"]\n'
FILES = {
    "afile": "not a folder\n",
    "bad.toml": GRID + "datasets = [",
    "wrongtype.toml": GRID.replace("[10]", '["ten"]'),
    "bigur.toml": GRID.replace("[10]", "[1e9]"),
    "seedset.toml": GRID + "[set]\nseed = 1\n",
    "lrzero.toml": GRID + "[set]\nlr = 0\n",
    "nomethods.toml": GRID.replace('["pgd-at"]', "[]"),
    "badsuite.toml": GRID + 'suite = "huge"\n',
    "badmilestones.toml": GRID + "[set]\nepochs = 4\nmilestones = [2, 9]\n",
    "partial/config.json": json.dumps({"run_id": "partial", "config": {}, "classes": [], "class_counts": []}),
}

CASES = [
    # bench run: names
    (["run", "--methods", "nope"], 2, "unknown method 'nope'; choose one of"),
    (["run", "--methods", ""], 2, "--methods is empty"),
    (["run", "--methods", " , "], 2, "--methods is empty"),
    (["run", "--arch", "vgg"], 2, "unknown architecture 'vgg'; choose one of"),
    (["run", "--dataset", "mnist"], 2, "unknown dataset 'mnist'; choose one of"),
    (["run", "--preset", "long"], 2, "unknown preset 'long'; choose one of"),
    # numbers
    (["run", "--ur", "0"], 2, "UR must be a number >= 1"),
    (["run", "--ur", "nan"], 2, "UR must be a number >= 1"),
    (["run", "--ur", "inf"], 2, "UR must be a number >= 1"),
    (["run", "--ur", "ten"], 2, "UR must be a number >= 1"),
    (["run", "--ur", "1e9"], 2, "the largest valid UR for fashion-mnist is 6000"),
    (["run", "--dataset", "cifar100", "--ur", "501"], 2, "the largest valid UR for cifar100 is 500"),
    (["run", "--epochs", "0"], 2, "epochs must be positive"),
    (["run", "--epochs", "2.5"], 2, "epochs must be a whole number"),
    (["run", "--batch-size", "-1"], 2, "batch_size must be positive"),
    (["run", "--eps", "-0.1"], 2, "eps must not be negative"),
    (["run", "--lr", "0"], 2, "lr must be positive"),
    (["run", "--seed", "-1"], 2, "seed must not be negative"),
    (["run", "--seed", "one"], 2, "seed must be a whole number"),
    (["run", "--eval-n", "-5"], 2, "eval_n must be a positive number"),
    (["run", "--suite", "nope"], 2, "unknown evaluation suite 'nope'; choose one of"),
    # --set
    (["run", "--set", "lr=0"], 2, "lr must be positive"),
    (["run", "--set", "lr=fast"], 2, "lr must be a number"),
    (["run", "--set", "batch_size=abc"], 2, "batch_size must be a whole number"),
    (["run", "--set", "seed=1"], 2, "seed is set with --seed"),
    (["run", "--set", "ur=10"], 2, "ur is set with --ur"),
    (["run", "--set", "dataset=cifar10"], 2, "dataset is set with --dataset"),
    (["run", "--set", "milestones=[a]"], 2, "milestones must be a list of whole epochs"),
    (["run", "--set", "milestones=[9,3]"], 2, "milestones must be increasing epochs"),
    (["run", "--set", "milestones=[50]"], 2, "inside the 10-epoch run"),
    (["run", "--preset", "smoke", "--set", "milestones=[1]"], 2,
     "a 1-epoch run has no epoch to decay the learning rate at; drop --set milestones (got [1]) or train longer"),
    (["run", "--set", "garbage"], 2, "--set expects KEY=VALUE"),
    (["run", "--set", "=3"], 2, "--set expects KEY=VALUE"),
    (["run", "--set", "nofield=3"], 2, "unknown config field 'nofield'; settable fields"),
    (["run", "--set", "eval_n=5"], 2, "use --eval-n"),
    (["run", "--set", "augment=zoom"], 2, "augment must be one of none, crop-flip"),
    (["run", "--set", "pgd-at.beta=3"], 2, "has no parameter 'beta'"),
    (["run", "--set", "reat.lambda=1"], 2, "not run here"),
    (["run", "--methods", "reat", "--set", "reat.variant=nope"], 2, "choose one of: official, paper"),
    (["run", "--nope"], 2, "No such option '--nope'"),
    # folders and devices
    (["run", "--out", "afile"], 2, "is a file"),
    (["run", "--out", "afile/sub"], 2, "is a file; pass a folder with --out"),
    (["run", "--report-dir", "afile"], 2, "is a file"),
    (["run", "--device", "tpu"], 1, "unknown device 'tpu'; use auto, cpu, cuda or cuda:N"),
    # bench eval
    (["eval", "missing/run"], 2, "no run folder, results folder or grid file"),
    (["eval", "emptydir"], 2, "holds no runs"),
    (["eval", "partial"], 2, "has no last checkpoint; train it first"),
    (["eval", "partial", "--checkpoint", "bogus"], 2, "'bogus' is not one of"),
    (["eval", "partial", "--n", "-5"], 2, "expected a positive number of test images"),
    (["eval", "partial", "--n", "abc"], 2, "expected a positive number of test images"),
    (["eval", "partial", "--suite", "nope"], 2, "'nope' is not one of"),
    (["eval", "partial", "--attacks", "pgd7"], 2, "unknown attack 'pgd7'; choose one of"),
    (["eval", "partial", "--attacks", ","], 2, "--attacks is empty"),
    (["eval", "partial", "--eps", "8/0"], 2, "'8/0' is not a radius"),
    (["eval", "partial", "--eps", "0.05,0.1", "--step-size", "0.01"], 2, "--step-size applies to a single --eps"),
    (["eval", "bad.toml"], 2, "is not valid TOML"),
    (["eval", "paper-mian"], 2, "shipped grids"),
    # bench grid
    (["grid", "nope"], 2, "no grid file 'nope' and no shipped grid of that name"),
    (["grid", "bad.toml"], 2, "is not valid TOML"),
    (["grid", "wrongtype.toml"], 2, "urs must hold numbers"),
    (["grid", "bigur.toml"], 2, "the largest valid UR for fashion-mnist is 6000"),
    (["grid", "seedset.toml"], 2, "seed is set with --seed (grids: seeds = [...])"),
    (["grid", "lrzero.toml"], 2, "lr must be positive"),
    (["grid", "nomethods.toml"], 2, "methods must be a non-empty list"),
    (["grid", "badsuite.toml"], 2, "unknown evaluation suite 'huge'"),
    (["grid", "badmilestones.toml"], 2, "inside the 4-epoch run"),
    (["grid", "fmnist-quick", "--workers", "0"], 2, "--workers"),
    (["grid", "fmnist-quick", "--partition", "gpu"], 2, "need --executor slurm"),
    (["grid", "fmnist-quick", "--executor", "slurm", "--mem", "4GB"], 2, "must be a size such as 16G or 500M"),
    (["grid", "fmnist-quick", "--executor", "slurm", "--slurm-option", "array=0-3"], 2, "set by ltbench itself"),
    (["grid", "fmnist-quick", "--preset", "long"], 2, "unknown preset 'long'"),
    (["grid", "fmnist-quick", "--set", "seed=3"], 2, "seed is set with --seed"),
    (["grid", "fmnist-quick", "--out", "afile"], 2, "is a file"),
    # bench report
    (["report", "missing"], 2, "no results folder missing"),
    (["report", "emptydir"], 2, "no finished runs under emptydir"),
    (["report", "afile"], 2, "is a file"),
    (["report", ".", "-o", "afile/report"], 2, "is a file; pass a folder with -o"),
    (["report", "emptydir", "--checkpoint", "bogus"], 2, "'bogus' is not one of"),
    # bench list
    (["list", "nope"], 2, "'nope' is not one of"),
    (["list", "methods", "extra"], 2, "unexpected extra argument"),
]


def snapshot(root: Path) -> dict[str, tuple[bytes, int]]:
    return {str(p.relative_to(root)): (p.read_bytes() if p.is_file() else b"", p.stat().st_mtime_ns)
            for p in sorted(root.rglob("*"))}


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name, text in FILES.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    (tmp_path / "emptydir").mkdir()
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_the_matrix_is_large_and_covers_every_command():
    assert len(CASES) >= 25
    assert {args[0] for args, _, _ in CASES} == {"run", "eval", "grid", "report", "list"}


@pytest.mark.parametrize(("args", "code", "message"), CASES, ids=[" ".join(c[0]) for c in CASES])
def test_bad_input(workdir: Path, args: list[str], code: int, message: str) -> None:
    before = snapshot(workdir)
    result = CliRunner().invoke(main, [*args, "--no-progress"] if args[0] in ("run", "eval", "grid") else args)
    assert result.exit_code == code, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert message in lines[0]
    assert "Traceback" not in result.output
    assert snapshot(workdir) == before


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here")
def test_missing_cuda_device_names_the_fix(workdir: Path) -> None:
    result = CliRunner().invoke(main, ["run", "--device", "cuda", "--no-progress"])
    assert result.exit_code == 1
    assert result.stderr.strip() == "error: device 'cuda' is not available here; use --device cpu or auto"
    assert not (workdir / "results").exists()


def test_missing_dataset_is_exit_1_before_anything_is_written(workdir: Path, cifar_root: Path) -> None:
    empty = workdir / "emptydir"
    before = snapshot(workdir)
    result = CliRunner().invoke(main, ["run", "--dataset", "cifar100", "--ur", "10", "--data-root", str(empty),
                                       "--no-progress"], env={"LTBENCH_DATA": None})
    assert result.exit_code == 1
    (line,) = result.stderr.strip().splitlines()
    assert "cifar100 is not in" in line and "bench data fetch cifar100" in line
    assert snapshot(workdir) == before
