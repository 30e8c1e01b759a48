"""Slow end-to-end runs on the real Fashion-MNIST-LT (the Debian package's files)."""

import json

import pytest
from click.testing import CliRunner

from bench.cli import main
from bench.data.fashion_mnist import DEBIAN_FASHION_MNIST
from methods import REGISTRY

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not DEBIAN_FASHION_MNIST.exists(), reason="apt-get install dataset-fashion-mnist"),
]


def test_every_method_smokes_on_fashion_mnist_lt(tmp_path):
    methods = ",".join(REGISTRY)
    result = CliRunner().invoke(main, ["run", "--methods", methods, "--preset", "smoke", "--out", str(tmp_path / "r"),
                                       "--report-dir", str(tmp_path / "report"), "--no-progress"])
    assert result.exit_code == 0, result.output
    runs = [p for p in (tmp_path / "r").iterdir() if p.is_dir()]
    assert sorted(json.loads((p / "config.json").read_text())["config"]["method"] for p in runs) == sorted(REGISTRY)
    for run_dir in runs:
        config = json.loads((run_dir / "config.json").read_text())
        assert sum(config["class_counts"]) == 14886
        assert (run_dir / "done").exists()
    index = (tmp_path / "report" / "index.md").read_text()
    assert all(name in index for name in REGISTRY)


def test_taet_stages_and_at_bsl_with_randaugment_on_fashion_mnist_lt(tmp_path):
    out = tmp_path / "r"
    base = ["run", "--preset", "smoke", "--out", str(out), "--no-report", "--no-progress"]
    result = CliRunner().invoke(main, [*base, "--methods", "taet", "--epochs", "2"])
    assert result.exit_code == 0, result.output
    result = CliRunner().invoke(main, [*base, "--methods", "at-bsl", "--set", "augment=ra-crop-flip"])
    assert result.exit_code == 0, result.output
    runs = {json.loads((p / "config.json").read_text())["config"]["method"]: p for p in out.iterdir()}
    taet_epochs = [json.loads(line) for line in (runs["taet"] / "metrics.jsonl").read_text().splitlines()]
    assert [m["attack_steps"] for m in taet_epochs] == [0, 2]  # round(0.4 * 2) = 1 clean epoch, then PGD-2
    assert json.loads((runs["at-bsl"] / "config.json").read_text())["config"]["augment"] == "ra-crop-flip"
    assert all((p / "eval.json").exists() for p in runs.values())
