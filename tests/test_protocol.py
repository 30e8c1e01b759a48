"""eval.json's results keyed by protocol: old files, results at other radii, malformed entries, radius parsing."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from bench.cli import main
from bench.core.errors import InputError
from bench.evaluation.protocol import EvalResults, MalformedResults, Protocol, default_step, fits
from bench.evaluation.settings import radii, radius

ROOT = Path(__file__).resolve().parents[1]
#: a committed run evaluated with the paper suite before protocols existed
OLD = ROOT / "results" / "reference" / "fashion-mnist-ur100-cnn-small-reat-quick-s0-7957e9f331" / "eval.json"


@pytest.fixture
def old() -> dict:
    return json.loads(OLD.read_text())


def test_an_old_file_reads_unchanged(old: dict) -> None:
    results = EvalResults.read(old, old["config"]["eps"], old["config"]["step_size"])
    assert results.primary is not None and results.primary.attacks == old["attacks"] and not results.others
    assert results.primary.protocol == Protocol("fp32", "balanced", 1000, 0.1, 0.025)
    written = results.write(copy.deepcopy(old))
    assert "protocols" not in written
    assert {k: v for k, v in written.items() if k not in ("eps", "step_size", "precision")} == old
    assert (written["eps"], written["step_size"], written["precision"]) == (0.1, 0.025, "fp32")


def test_an_old_file_evaluated_at_another_radius_keeps_its_results_apart(old: dict) -> None:
    """What `bench eval --eps 0.05` left before protocols existed: clean and PGD-20 at 0.05 at the top."""
    for key in ("pgd20", "pgd100", "cw100", "aa"):
        old["attacks"][key]["params"]["eps"] = 0.05
        if "step_size" in old["attacks"][key]["params"]:
            old["attacks"][key]["params"]["step_size"] = 0.0125
    results = EvalResults.read(old, 0.1, 0.025)
    assert results.primary is not None and list(results.primary.attacks) == ["clean"], "clean has no radius"
    (other,) = results.others
    assert other.protocol == Protocol("fp32", "balanced", 1000, 0.05, 0.0125)
    assert list(other.attacks) == ["pgd20", "pgd100", "cw100", "aa"]


def test_results_of_another_precision_or_step_are_not_the_runs_own(old: dict) -> None:
    old["attacks"]["pgd20"]["params"]["precision"] = "bf16"
    old["attacks"]["cw100"]["params"]["step_size"] = 0.01
    results = EvalResults.read(old, 0.1, 0.025)
    assert results.primary is not None and "pgd20" not in results.primary.attacks
    assert {(b.protocol.precision, b.protocol.step_size): list(b.attacks) for b in results.others} == {
        ("bf16", 0.025): ["pgd20"], ("fp32", 0.01): ["cw100"]}


def test_blocks_are_written_sorted_and_read_back(old: dict) -> None:
    results = EvalResults.read(old, 0.1, 0.025)
    for eps in (0.15, 0.05):
        at = Protocol("fp32", "balanced", 1000, eps, default_step(eps, 0.1, 0.025))
        results.block(at, "stratified-first-n").put("pgd20", old["attacks"]["pgd20"])
    written = results.write(copy.deepcopy(old))
    assert [entry["eps"] for entry in written["protocols"]] == [0.05, 0.15]
    assert list(written["protocols"][0]) == ["eps", "step_size", "precision", "test_profile", "n_test", "subset",
                                             "attacks"]
    again = EvalResults.read(json.loads(json.dumps(written)), 0.1, 0.025)
    assert [b.protocol for b in again.blocks()] == [b.protocol for b in results.blocks()]


@pytest.mark.parametrize("protocols, message", [
    ({}, "protocols must be a list"),
    ([{"eps": 0.05}], r"protocols\[0\] must be an object"),
    ([{"eps": "x", "step_size": 0.01, "precision": "fp32", "test_profile": "balanced", "n_test": 10,
       "subset": "all", "attacks": {}}], r"protocols\[0\]\.eps must be a number"),
    ([{"eps": 0.05, "step_size": 0.01, "precision": "fp32", "test_profile": "balanced", "n_test": 1.5,
       "subset": "all", "attacks": {}}], r"n_test must be a whole number"),
    ([{"eps": 0.05, "step_size": 0.01, "precision": "fp32", "test_profile": "balanced", "n_test": 10,
       "subset": "all", "attacks": []}], "must map attack names"),
])
def test_malformed_protocols_name_the_part(old: dict, protocols: object, message: str) -> None:
    with pytest.raises(MalformedResults, match=message):
        EvalResults.read({**old, "protocols": protocols}, 0.1, 0.025)


def test_the_step_follows_the_radius_and_clean_has_none() -> None:
    assert default_step(0.1, 0.1, 0.03) == 0.03 and default_step(0.05, 0.1, 0.03) == 0.0125
    at_005 = Protocol("fp32", "balanced", 100, 0.05, 0.0125)
    assert fits("clean", {}, at_005) and fits("aa", {"eps": 0.05}, at_005)
    assert not fits("pgd20", {"eps": 0.05, "step_size": 0.01}, at_005)
    assert not fits("fgsm", {"eps": 0.05, "step_size": 0.05, "precision": "bf16"}, at_005)
    assert EvalResults(0.1, 0.025).home("clean", at_005).eps == 0.1


@pytest.mark.parametrize("text, expected", [("0.05", (0.05,)), ("8/255", (8 / 255,)),
                                            ("0.025, 0.05,8/255,0.05", (0.025, 0.05, 8 / 255)), ("0", (0.0,))])
def test_radii_accept_decimals_and_fractions(text: str, expected: tuple[float, ...]) -> None:
    assert radii(text) == expected


@pytest.mark.parametrize("text", ["", ",", "abc", "-0.1", "1/0", "nan", "inf", "__import__('os')", "8/255/2"])
def test_bad_radii_are_one_line_errors(text: str) -> None:
    with pytest.raises(InputError, match="radius|radii|>= 0"):
        radii(text)


def test_radius_of_numbers() -> None:
    assert radius(0.1) == 0.1 and radius(1) == 1.0
    with pytest.raises(InputError):
        radius(True)


@pytest.mark.parametrize("args, message", [
    (["--eps", "0.05,abc"], "'abc' is not a radius"),
    (["--eps", "-1"], "must be a number >= 0"),
    (["--eps", "0.05,0.1", "--step-size", "0.01"], "--step-size applies to a single --eps"),
])
def test_bench_eval_rejects_bad_radii_before_anything_runs(tmp_path: Path, args: list[str], message: str) -> None:
    result = CliRunner().invoke(main, ["eval", str(tmp_path), *args])
    assert result.exit_code == 2 and message in result.output
    assert not list(tmp_path.iterdir())
