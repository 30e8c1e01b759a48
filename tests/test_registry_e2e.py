"""Every registered method trains one smoke epoch and evaluates, through `bench run` (as timm/DomainBed do)."""

import json

import pytest
from click.testing import CliRunner

from bench.cli import main
from methods import REGISTRY


@pytest.mark.slow
@pytest.mark.parametrize("method", list(REGISTRY))
def test_method_trains_and_evaluates(tmp_path, tiny_args, method):
    result = CliRunner().invoke(main, ["run", "--methods", method, "--out", str(tmp_path), *tiny_args])
    assert result.exit_code == 0, result.output
    (run_dir,) = list(tmp_path.iterdir())
    record = json.loads((run_dir / "eval.json").read_text())
    assert set(record["attacks"]) == {"clean", "pgd20"}
    (epoch,) = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    counts = json.loads((run_dir / "config.json").read_text())["class_counts"]
    assert epoch["epoch"] == 0 and sum(epoch["ae_pred_hist"]) == sum(counts)  # one AE per training image
    assert (run_dir / "done").exists()


@pytest.mark.slow
def test_variants_run_from_the_cli(tmp_path, tiny_args):
    args = ["run", "--methods", "reat,robal", "--set", "reat.variant=paper", "--set", "reat.rbl_mode=logit",
            "--set", "robal.variant=R", "--out", str(tmp_path), *tiny_args]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    params = {json.loads((d / "config.json").read_text())["config"]["method"]:
              json.loads((d / "config.json").read_text())["config"]["method_params"] for d in tmp_path.iterdir()}
    assert params["reat"]["variant"] == "paper" and params["reat"]["rbl_mode"] == "logit"
    assert params["robal"]["variant"] == "R"


def test_unknown_method_parameter_value_is_an_error(tmp_path, tiny_args):
    result = CliRunner().invoke(main, ["run", "--methods", "reat", "--set", "reat.variant=nope",
                                       "--out", str(tmp_path / "r"), *tiny_args])
    assert result.exit_code == 2 and "choose one of: official, paper" in result.output
    assert not (tmp_path / "r").exists()
