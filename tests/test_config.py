"""The run config seam: one source of defaults, evaluation settings outside the run id, layering."""

from __future__ import annotations

import dataclasses
import json

import pytest
from click.testing import CliRunner

from bench.cli import main
from bench.core import store
from bench.core.errors import InputError
from bench.grid.spec import expand, parse_grid
from bench.training.config import DEFAULTS, PRESETS, RunConfig, build_config, setting


def test_field_defaults_are_the_quick_preset_on_fashion_mnist():
    assert build_config() == DEFAULTS
    assert PRESETS["quick"].training == {}
    assert build_config(preset="smoke").epochs == 1 and build_config(preset="paper").milestones == (60, 75)


def test_click_options_and_grids_take_their_defaults_from_the_config():
    options = {p.name: p.default for p in main.commands["run"].params}
    assert (options["methods"], options["dataset"], options["arch"], options["preset"]) == (
        DEFAULTS.method, DEFAULTS.dataset, DEFAULTS.arch, DEFAULTS.preset)
    assert float(options["ur"]) == DEFAULTS.ur and int(options["seed"]) == DEFAULTS.seed
    spec = parse_grid('datasets = ["cifar10"]\narchs = ["cnn-small"]\nurs = [10]\nmethods = ["pgd-at"]\n', "g")
    assert spec.seeds == (DEFAULTS.seed,) and spec.preset == DEFAULTS.preset


def test_evaluation_settings_are_not_part_of_the_run_id():
    assert "eval_suite" not in DEFAULTS.to_dict() and "eval_n" not in DEFAULTS.to_dict()
    text = 'datasets = ["cifar10"]\narchs = ["cnn-small"]\nurs = [10]\nmethods = ["pgd-at"]\n'
    fast, full = parse_grid(text, "a"), parse_grid(text + 'suite = "full"\neval_n = "all"\n', "b")
    assert [c.run_id for c in expand(fast)] == [c.run_id for c in expand(full)]
    assert full.evaluation().attacks[-1] == "aa" and full.evaluation().n is None
    assert fast.evaluation().suite == "fast" and fast.evaluation().n == 1000


def test_a_later_field_at_its_default_keeps_earlier_run_ids():
    @dataclasses.dataclass(frozen=True)
    class Later(RunConfig):
        extra: float = setting(0.0, hashed_default=False)

    base = RunConfig()
    assert Later().run_id == base.run_id
    assert Later(extra=0.5).run_id != base.run_id
    assert "extra" in Later().to_dict() and "extra" not in Later().identity()


def test_epoch_eval_n_stays_in_the_run_id():
    assert build_config(overrides={"epoch_eval_n": 100}).run_id != DEFAULTS.run_id


def test_largest_valid_ur_is_named():
    with pytest.raises(InputError, match="largest valid UR for cifar10 is 5000"):
        build_config(dataset="cifar10", ur=5001)
    assert build_config(dataset="cifar10", ur=5000).ur == 5000


def test_old_configs_are_refused_with_the_fix():
    with pytest.raises(Exception, match="another version"):
        RunConfig.from_dict({**DEFAULTS.to_dict(), "eval_suite": "fast"})


@pytest.mark.slow
def test_bench_eval_adds_attacks_to_finished_runs_without_retraining(tmp_path, tiny_args):
    out = tmp_path / "results"
    trained = CliRunner().invoke(main, ["run", "--methods", "pgd-at,at-bsl", "--out", str(out), *tiny_args])
    assert trained.exit_code == 0, trained.output
    runs = sorted(p for p in out.iterdir() if p.is_dir())
    before = {d: (d / "ckpt" / "last.pt").stat().st_mtime_ns for d in runs}
    earlier = {d: json.loads((d / "eval.json").read_text())["attacks"] for d in runs}
    data_root = tiny_args[tiny_args.index("--data-root") + 1]
    result = CliRunner().invoke(main, ["eval", str(out), "--suite", "full", "--data-root", data_root,
                                       "--device", "cpu", "--no-progress"])
    assert result.exit_code == 0, result.output
    assert result.stderr.count("(done earlier, same settings)") == 4  # clean and PGD-20 of both runs
    for d in runs:
        record = json.loads((d / "eval.json").read_text())
        assert list(record["attacks"]) == ["clean", "fgsm", "pgd20", "pgd100", "cw100", "aa"]
        assert record["attacks"]["pgd20"] == earlier[d]["pgd20"] and record["n_test"] == 20
        assert record["evaluation"]["suite"] == "full" and record["evaluation"]["n"] == 20
        assert (d / "ckpt" / "last.pt").stat().st_mtime_ns == before[d] and store.is_done(d)
    assert "aa" in result.output
