"""Grids: TOML expansion, shipped grids, locks, resume, local and SLURM (submitit debug) executors, CLI."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from bench.cli import main
from bench.core import locks, store
from bench.core.errors import BenchError, InputError
from bench.core.progress import Progress
from bench.core.store import run_status
from bench.evaluation.settings import eval_settings
from bench.grid.executors import (
    CUDA_WORKERS_CAP,
    choose_cpu_workers,
    choose_cuda_workers,
    cpu_threads,
    run_local,
    worker_device,
)
from bench.grid.slurm import SlurmOptions, SlurmRun, job_cpus, job_ended, parse_options, run_slurm
from bench.grid.spec import expand, load_grid, parse_grid
from bench.grid.task import DONE_EARLIER, EVALUATED, LOCKED, TRAINED, RunResult, RunTask, execute, missing_results
from bench.training.config import build_config

#: a run of the tiny grid takes a second or two: one epoch, PGD-1 training, 10 test images
TINY_GRID = """
datasets = ["cifar10"]
archs = ["cnn-small"]
urs = [10]
methods = ["pgd-at", "at-bsl"]
preset = "quick"
eval_n = 10

[set]
epochs = 1
epoch_eval_n = 10
batch_size = 32
"""
#: the flags every training test adds (the preset and a --set override the file)
TINY_FLAGS = ["--preset", "smoke", "--set", "steps=1", "--device", "cpu", "--no-progress"]


@pytest.fixture
def grid_file(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.toml"
    path.write_text(TINY_GRID)
    return path


def bench(*args: str | Path):
    return CliRunner().invoke(main, [str(a) for a in args])


def with_eval_eps(value: str) -> str:
    """The tiny grid with ``eval_eps = value``."""
    return TINY_GRID.replace("\n[set]", f"\neval_eps = {value}\n\n[set]")


def tiny_configs():
    return expand(parse_grid(TINY_GRID, "tiny"), preset="smoke", fields={"steps": 1})


def fingerprints(run_dir: Path) -> dict[str, tuple[str, int]]:
    """sha256 and mtime of every file below ``run_dir``."""
    return {str(p.relative_to(run_dir)): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
            for p in sorted(run_dir.rglob("*")) if p.is_file()}


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", ""])
    proc.wait()
    return proc.pid


def write_lock(run_dir: Path, pid: int, host: str | None = None) -> Path:
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / locks.LOCK_FILE
    path.write_text(json.dumps({"host": host or socket.gethostname(), "pid": pid, "time": time.time()}))
    return path


class Log(Progress):
    """A Progress without bars that keeps its log lines."""

    def __init__(self) -> None:
        super().__init__(enabled=False)
        self.lines: list[str] = []

    def log(self, message: str) -> None:
        self.lines.append(message)


# --- expansion -------------------------------------------------------------------------------------------

def test_cartesian_product_with_exclusions():
    spec = parse_grid("""
        datasets = ["cifar10", "cifar100"]
        archs = ["cnn-small"]
        urs = [10, 100]
        methods = ["pgd-at", "robal", "reat"]
        seeds = [0, 1]
        exclude = [{ method = "robal", dataset = "cifar100" }, { ur = 100, seed = 1 }]
    """, "test")
    runs = expand(spec)
    # 2 x 2 x 3 x 2 = 24; robal on cifar100: 4; UR 100 seed 1: 6, one of them already gone
    assert len(runs) == 24 - 4 - 5
    assert not [c for c in runs if c.method == "robal" and c.dataset == "cifar100"]
    assert not [c for c in runs if c.ur == 100 and c.seed == 1]
    assert len({c.run_id for c in runs}) == len(runs)


@pytest.mark.parametrize("sweep", ["[sweep.reat]\nlambda = [0.5, 1.0, 2.0]",
                                   '[sweep]\n"reat.lambda" = [0.5, 1.0, 2.0]'])
def test_sweep_multiplies_only_its_method(sweep):
    spec = parse_grid(f'datasets = ["cifar10"]\narchs = ["cnn-small"]\nurs = [10]\n'
                      f'methods = ["pgd-at", "reat"]\n{sweep}\n', "test")
    runs = expand(spec)
    assert [c.method for c in runs] == ["pgd-at", "reat", "reat", "reat"]
    assert [c.method_params["lambda"] for c in runs[1:]] == [0.5, 1.0, 2.0]
    assert runs[0].method_params == build_config(method="pgd-at", dataset="cifar10").method_params


def test_method_param_rules_and_overrides():
    spec = parse_grid("""
        datasets = ["cifar10"]
        archs = ["cnn-small"]
        urs = [10]
        methods = ["pgd-at", "reat"]
        preset = "quick"
        suite = "paper"
        [set]
        epochs = 3
        "reat.rbl_mode" = "logit"
        [sweep.reat]
        variant = ["official", "paper"]
        lambda = [0.5, 1.0]
        [[exclude]]
        "reat.variant" = "official"
        "reat.lambda" = [0.5]
    """, "test")
    runs = expand(spec, preset="smoke", fields={"epochs": 2}, params={"reat": {"rbl_tau": 2.0}})
    reat = [c for c in runs if c.method == "reat"]
    assert len(runs) == 1 + 3 and {c.method for c in runs} == {"pgd-at", "reat"}
    assert {(c.method_params["variant"], c.method_params["lambda"]) for c in reat} == {
        ("official", 1.0), ("paper", 0.5), ("paper", 1.0)}
    assert all(c.method_params["rbl_mode"] == "logit" and c.method_params["rbl_tau"] == 2.0 for c in reat)
    assert all(c.preset == "smoke" and c.epochs == 2 for c in runs)
    assert spec.evaluation("smoke").suite == "paper" and spec.evaluation("smoke").n == 100
    assert spec.evaluation("smoke", "full", "all").attacks[-1] == "aa" and spec.evaluation("smoke", n="all").n is None
    with pytest.raises(InputError, match="not run"):
        expand(spec, params={"trades": {"beta": 1.0}})


BASE = 'datasets = ["cifar10"]\narchs = ["cnn-small"]\nurs = [10]\nmethods = ["reat"]\n'


@pytest.mark.parametrize("text, message", [
    (BASE.replace("datasets", "dataset"), "valid keys: datasets, archs, urs, methods, seeds"),
    (BASE + "[sweep.reat]\nlamda = [1.0]", "no parameter 'lamda'"),
    (BASE + "[sweep.trades]\nbeta = [1.0]", "not in methods"),
    (BASE + "[sweep.reat]\nlambda = 1.0", "non-empty list"),
    (BASE + 'exclude = [{ datset = "cifar10" }]', "valid keys: dataset, arch, ur, method, seed"),
    (BASE + '[slurm]\nqueue = "gpu"', "valid keys: partition"),
    (BASE.replace('"reat"', '"nope"'), "unknown method 'nope'"),
    (BASE.replace("[10]", "10"), "non-empty list"),
    (BASE + "[set]\nepochz = 1", "unknown config field"),
    (BASE + '[set]\n"trades.beta" = 1.0', "not in methods"),
    (BASE + "datasets = [", "not valid TOML"),
])
def test_bad_grid_files_name_the_valid_choices(text, message):
    with pytest.raises(InputError, match=message):
        expand(parse_grid(text, "test"))


@pytest.mark.parametrize("name, count", [("paper-main", 108), ("ablation", 11), ("fmnist-quick", 18),
                                         ("taet-protocol", 16), ("fmnist-reference", 72), ("fmnist-ur-sweep", 28),
                                         ("rbl-logit", 10), ("bf16-numerics", 12), ("fmnist-eps-curve", 8),
                                         ("robustlt-parts", 9)])
def test_shipped_grids_expand(name, count):
    runs = expand(load_grid(name))
    assert len(runs) == count == len({c.run_id for c in runs})
    assert len(expand(load_grid(f"{name}.toml"))) == count


def test_reference_grids_share_their_runs():
    """fmnist-ur-sweep, rbl-logit and robustlt-parts reuse fmnist-reference's runs where their settings coincide."""
    reference = {c.run_id for c in expand(load_grid("fmnist-reference"))}
    sweep = expand(load_grid("fmnist-ur-sweep"))
    assert {c.run_id for c in sweep if c.ur in (10, 100)} <= reference
    assert sum(c.run_id in reference for c in sweep) == 8
    logit = expand(load_grid("rbl-logit"))
    official = [c for c in logit if c.method_params["rbl_mode"] == "official"]
    assert {c.run_id for c in official} <= reference and len(official) == 2
    assert {c.method_params["rbl_tau"] for c in logit if c not in official} == {-1.0, 0.5, 1.0, 2.0}
    parts = expand(load_grid("robustlt-parts"))
    shared = [c for c in parts if c.run_id in reference]
    assert len(shared) == 3 and all(c.method_params["robustlt_alpha"] == 0.3 and c.method_params["robustlt_beta"] == 0.8
                                    for c in shared)
    assert {(c.method_params["robustlt_alpha"], c.method_params["robustlt_beta"]) for c in parts} == {
        (0.0, 0.8), (0.3, 0.0), (0.3, 0.8)}
    assert {(c.preset, c.epochs, c.steps) for c in [*sweep, *logit, *parts]} == {("quick", 10, 5)}


def test_fmnist_reference_keeps_the_committed_run_ids():
    """The 24 AWP and RobustLT runs are new; the 48 committed runs (fp32) keep their ids."""
    runs = expand(load_grid("fmnist-reference"), fields={"precision": "fp32"})
    committed = {p.parent.name for p in (Path(__file__).parents[1] / "results" / "reference").glob("*/done")}
    old = {c.run_id for c in runs if c.method in ("pgd-at", "trades", "robal", "at-bsl", "rbl", "tail", "reat", "taet")}
    assert len(old) == 48 and old <= committed
    new = {c.method for c in runs if c.run_id not in old}
    assert new == {"awp", "robustlt+pgd-at", "robustlt+at-bsl", "robustlt+reat"}


def test_shipped_grid_contents():
    paper = expand(load_grid("paper-main"))
    assert {(c.dataset, c.arch, c.ur) for c in paper} == {
        (d, a, u) for d in ("cifar10", "cifar100") for a in ("resnet18", "wrn-28-10") for u in (10, 50, 100)}
    assert {c.preset for c in paper} == {"paper"} and load_grid("paper-main").evaluation().suite == "paper"
    assert len({c.method for c in paper}) == 8
    assert {c.augment for c in paper if c.method == "at-bsl"} == {"crop-flip", "ra-crop-flip"}
    assert {c.augment for c in paper if c.method != "at-bsl"} == {"crop-flip"}
    protocol = expand(load_grid("taet-protocol"))
    assert {c.method for c in protocol} == {"reat", "at-bsl", "robal", "taet"}
    assert {(c.epochs, c.milestones, c.eps, c.step_size, c.test_profile) for c in protocol} == {
        (100, (75, 90), 0.031, 0.003, "lt")}
    ablation = expand(load_grid("ablation"))
    reat = [c.method_params for c in ablation if c.method == "reat"]
    assert sorted(c.method for c in ablation if c.method != "reat") == ["at-bsl", "rbl", "tail"]
    assert {p["lambda"] for p in reat if p["variant"] == "official"} == {1.0}
    assert {(p["lambda"], p["rbl_mode"]) for p in reat if p["variant"] == "paper"} == {
        (lam, mode) for lam in (0.5, 1.0, 2.0) for mode in ("official", "logit")}
    quick = expand(load_grid("fmnist-quick"))
    assert {(c.preset, c.arch, c.seed) for c in quick} == {("quick", "cnn-small", 0)}
    assert load_grid("fmnist-quick").evaluation().suite == "fast"
    assert sorted((c.method, c.augment) for c in quick if c.method in ("at-bsl", "taet") and c.ur == 100) == [
        ("at-bsl", "none"), ("at-bsl", "ra-crop-flip"), ("taet", "none")]


def test_unknown_grid_lists_the_shipped_ones():
    shipped = ("ablation, bf16-numerics, fmnist-eps-curve, fmnist-quick, fmnist-reference, fmnist-ur-sweep, "
               "paper-main, rbl-logit, robustlt-parts, taet-protocol")
    with pytest.raises(InputError, match=shipped):
        load_grid("paper-mian")
    result = bench("grid", "paper-mian", "--dry-run")
    assert result.exit_code == 2 and "shipped grids" in result.output


# --- dry run ---------------------------------------------------------------------------------------------

def test_dry_run_lists_statuses_and_trains_nothing(tmp_path, grid_file):
    out = tmp_path / "results"
    done, partial = (out / c.run_id for c in tiny_configs())
    for run_dir in (done, partial):
        store.write_json(run_dir / store.CONFIG_FILE, {})
    store.mark_done(done)
    result = bench("grid", grid_file, "--dry-run", "--out", out, *TINY_FLAGS)
    assert result.exit_code == 0, result.output
    assert done.name in result.output and partial.name in result.output
    assert "done" in result.output and "partial" in result.output
    assert "2 runs: 1 already done, 1 partial, 0 failed, 0 locked, 0 to do" in result.output
    store.mark_failed(partial, "boom")
    assert run_status(partial) == "failed" and run_status(out / "nothing") == "todo"
    result = bench("grid", "fmnist-quick", "--dry-run", "--out", out, "--preset", "smoke")
    assert "-smoke-" in result.output and "18 to do" in result.output
    assert sorted(p.name for p in out.iterdir()) == sorted([done.name, partial.name])


# --- locks -----------------------------------------------------------------------------------------------

def test_live_lock_skips_the_run(tmp_path):
    cfg = tiny_configs()[0]
    lock = write_lock(tmp_path / cfg.run_id, os.getpid())
    before = lock.read_text()
    result = execute(RunTask(cfg, tmp_path, None, "cpu"), Log())
    assert result.status == LOCKED and f"locked by pid {os.getpid()}" in result.message
    assert lock.read_text() == before and not (tmp_path / cfg.run_id / store.CONFIG_FILE).exists()


def test_lock_staleness():
    assert locks.LockInfo(socket.gethostname(), dead_pid(), 0.0).pid_gone()
    assert not locks.LockInfo(socket.gethostname(), os.getpid(), 0.0).pid_gone()
    assert not locks.LockInfo("another-host", dead_pid(), 0.0).pid_gone()


def test_lock_from_another_host_is_stale_only_without_heartbeat(tmp_path):
    path = write_lock(tmp_path / "run", dead_pid(), host="another-host")
    holder = locks.read_lock(path)
    assert not locks.is_stale(path, holder)
    old = time.time() - locks.STALE_AFTER_S - 1
    os.utime(path, (old, old))
    assert locks.is_stale(path, holder)


@pytest.mark.slow
def test_stale_lock_is_taken_over_and_released(tmp_path, cifar_root):
    cfg = tiny_configs()[0]
    pid = dead_pid()
    lock = write_lock(tmp_path / cfg.run_id, pid)
    log = Log()
    result = execute(RunTask(cfg, tmp_path, str(cifar_root), "cpu"), log)
    assert result.status == TRAINED and result.clean is not None
    assert any(f"took over the stale lock of pid {pid}" in line for line in log.lines)
    assert store.is_done(tmp_path / cfg.run_id) and not lock.exists()


def test_failing_run_releases_its_lock_and_the_grid_goes_on(tmp_path, grid_file, monkeypatch, cifar_root):
    failing, passing = tiny_configs()

    def fake_run_one(cfg, evaluation, run_dir, **kwargs):
        assert (run_dir / locks.LOCK_FILE).exists()
        if cfg.run_id == failing.run_id:
            raise BenchError("loss is NaN")
        return {"attacks": {"clean": {"acc": 0.5}, "pgd20": {"acc": 0.25}}}

    monkeypatch.setattr("bench.grid.task.run_one", fake_run_one)
    result = bench("grid", grid_file, "--out", tmp_path, "--data-root", cifar_root, *TINY_FLAGS)
    assert result.exit_code == 1
    assert "1 of 2 runs failed" in result.output and "loss is NaN" in result.output
    assert store.failure_message(tmp_path / failing.run_id) == "loss is NaN"
    assert "Traceback" in (tmp_path / failing.run_id / store.FAILED_FILE).read_text()
    assert "50.00" in result.output and "25.00" in result.output
    assert not list(tmp_path.rglob(locks.LOCK_FILE))


def test_missing_results_of_a_finished_run(tmp_path):
    cfg = tiny_configs()[0]
    paper = eval_settings(suite="paper", n=10)
    fast = eval_settings(suite="fast", n=10)
    result = {"params": {}, "per_class_total": [1] * 10}
    record = {"evaluation": {"n": 10}, "n_test": 10, "subset": "stratified-first-n",
              "attacks": {"clean": result, "pgd20": result}}
    store.write_json(tmp_path / "eval.json", record)
    assert missing_results(tmp_path, cfg, paper) == {None: ("pgd100", "cw100", "aa")}
    assert missing_results(tmp_path, cfg, fast) == {}
    # other test images: the grid leaves adding results on them to `bench eval`
    assert missing_results(tmp_path, cfg, eval_settings(suite="paper", n=20)) == {}
    # eval_eps: the suite at each radius (clean has none: its result at the run's eps serves every radius)
    assert cfg.eps == 8 / 255
    assert missing_results(tmp_path, cfg, fast, (0.05, 8 / 255, 0.1)) == {0.05: ("pgd20",), 0.1: ("pgd20",)}
    at_005 = {"eps": 0.05, "step_size": 0.0125, "precision": "fp32", "test_profile": "balanced", "n_test": 10,
              "subset": "stratified-first-n", "attacks": {"pgd20": result}}
    store.write_json(tmp_path / "eval.json", {**record, "protocols": [at_005]})
    assert missing_results(tmp_path, cfg, fast, (0.05, 0.1)) == {0.1: ("pgd20",)}
    other_images = {**at_005, "n_test": 20}
    store.write_json(tmp_path / "eval.json", {**record, "protocols": [other_images]})
    assert missing_results(tmp_path, cfg, fast, (0.05,)) == {0.05: ("pgd20",)}
    (tmp_path / "eval.json").write_text("{not json")
    assert missing_results(tmp_path, cfg, paper) == {}


def test_dry_run_counts_runs_lacking_a_radius_of_eval_eps(tmp_path, grid_file):
    out = tmp_path / "results"
    first, second = tiny_configs()
    for cfg in (first, second):
        run_dir = out / cfg.run_id
        store.write_json(run_dir / "config.json", {"run_id": cfg.run_id, "config": cfg.to_dict()})
        result = {"params": {}, "per_class_total": [1] * 10}
        store.write_json(run_dir / "eval.json", {"evaluation": {"n": 10}, "n_test": 10, "attacks": {
            "clean": result, "pgd20": result}})
        store.mark_done(run_dir)
    grid_file.write_text(with_eval_eps('["1/40", 0.05]'))
    plan = bench("grid", grid_file, "--out", out, "--dry-run", "--suite", "fast", *TINY_FLAGS)
    assert plan.exit_code == 0, plan.output
    assert "2 runs: 0 already done, 2 to evaluate" in plan.output
    grid_file.write_text(TINY_GRID)
    plan = bench("grid", grid_file, "--out", out, "--dry-run", "--suite", "fast", *TINY_FLAGS)
    assert "2 runs: 2 already done" in plan.output


@pytest.mark.parametrize("value, message", [("[]", "eval_eps is empty"), ("0.05", "must be a list"),
                                            ('["eight"]', "not a radius"), ("[-0.1]", "number >= 0"),
                                            ('["1/0"]', "not a radius"), ("[true]", "number >= 0")])
def test_bad_eval_eps_names_the_fix(value, message):
    with pytest.raises(InputError, match=message):
        parse_grid(with_eval_eps(value), "test")


def test_eval_eps_accepts_numbers_and_fractions():
    spec = parse_grid(with_eval_eps('[0.05, "8/255", 0.05]'), "t")
    assert spec.eval_eps == (0.05, 8 / 255)
    assert load_grid("fmnist-eps-curve").eval_eps == (0.025, 0.05, 0.075, 0.1, 0.125, 0.15)
    assert parse_grid(TINY_GRID, "t").eval_eps == ()


def evaluate_without_training(grid_file: Path, out: Path, cifar_root: Path, suite: str) -> None:
    """The dry run lists both finished runs as 'to evaluate'; the grid then evaluates them and trains none."""
    plan = bench("grid", grid_file, "--out", out, "--suite", suite, "--dry-run", *TINY_FLAGS)
    assert "2 runs: 0 already done, 2 to evaluate" in plan.output
    second = bench("grid", grid_file, "--out", out, "--data-root", cifar_root, "--suite", suite, *TINY_FLAGS)
    assert second.exit_code == 0, second.output
    assert second.output.count(f": {EVALUATED}") == 2 and TRAINED not in second.output


@pytest.mark.slow
def test_grid_adds_the_missing_attacks_of_a_finished_run_without_retraining(tmp_path, grid_file, cifar_root):
    out = tmp_path / "results"
    first = bench("grid", grid_file, "--out", out, "--data-root", cifar_root, "--suite", "fast", *TINY_FLAGS)
    assert first.exit_code == 0, first.output
    run_dirs = [out / c.run_id for c in tiny_configs()]
    checkpoints = [fingerprints(d / "ckpt") for d in run_dirs]
    fast = [json.loads((d / "eval.json").read_text())["attacks"] for d in run_dirs]
    evaluate_without_training(grid_file, out, cifar_root, "paper")
    for run_dir, before, stored in zip(run_dirs, checkpoints, fast, strict=True):
        attacks = json.loads((run_dir / "eval.json").read_text())["attacks"]
        assert list(attacks) == ["clean", "pgd20", "pgd100", "cw100", "aa"]
        assert {key: attacks[key] for key in stored} == stored  # kept, not recomputed
        assert fingerprints(run_dir / "ckpt") == before  # not retrained
    third = bench("grid", grid_file, "--out", out, "--data-root", cifar_root, "--suite", "paper", *TINY_FLAGS)
    assert third.exit_code == 0 and "running 0 (local)" in third.output


@pytest.mark.slow
def test_grid_evaluates_every_run_at_each_radius_of_eval_eps(tmp_path, grid_file, cifar_root):
    out = tmp_path / "results"
    grid_file.write_text(with_eval_eps('["1/40"]'))
    first = bench("grid", grid_file, "--out", out, "--data-root", cifar_root, "--suite", "fast", *TINY_FLAGS)
    assert first.exit_code == 0, first.output
    run_dirs = [out / c.run_id for c in tiny_configs()]
    for run_dir in run_dirs:
        record = json.loads((run_dir / "eval.json").read_text())
        assert record["eps"] == 8 / 255 and list(record["attacks"]) == ["clean", "pgd20"]
        assert [(b["eps"], b["n_test"], list(b["attacks"])) for b in record["protocols"]] == [(0.025, 10, ["pgd20"])]
    checkpoints = [fingerprints(d / "ckpt") for d in run_dirs]
    stored = [json.loads((d / "eval.json").read_text()) for d in run_dirs]

    grid_file.write_text(with_eval_eps("[0.025, 0.05]"))
    evaluate_without_training(grid_file, out, cifar_root, "fast")
    for run_dir, before, earlier in zip(run_dirs, checkpoints, stored, strict=True):
        record = json.loads((run_dir / "eval.json").read_text())
        assert record["attacks"] == earlier["attacks"] and record["protocols"][0] == earlier["protocols"][0]
        assert [b["eps"] for b in record["protocols"]] == [0.025, 0.05]
        assert fingerprints(run_dir / "ckpt") == before  # not retrained
    third = bench("grid", grid_file, "--out", out, "--data-root", cifar_root, "--suite", "fast", *TINY_FLAGS)
    assert third.exit_code == 0 and "running 0 (local)" in third.output


# --- executors -------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_resume_after_a_run_is_deleted(tmp_path, grid_file, cifar_root):
    out = tmp_path / "results"
    first = bench("grid", grid_file, "--out", out, "--data-root", cifar_root, "--workers", "2", *TINY_FLAGS)
    assert first.exit_code == 0, first.output
    deleted, kept = (out / c.run_id for c in tiny_configs())
    assert store.is_done(deleted) and store.is_done(kept)
    before = fingerprints(kept)
    shutil.rmtree(deleted)
    second = bench("grid", grid_file, "--out", out, "--data-root", cifar_root, *TINY_FLAGS)
    assert second.exit_code == 0, second.output
    assert "running 1 (local)" in second.output and f"[1/1] {deleted.name}: {TRAINED}" in second.output
    assert DONE_EARLIER in second.output
    assert store.is_done(deleted) and fingerprints(kept) == before


@pytest.mark.slow
def test_slurm_path_with_the_debug_executor(tmp_path, cifar_root):
    cfg = tiny_configs()[1]
    reported, logged = [], []
    task = RunTask(cfg, tmp_path, str(cifar_root), "cpu")
    results = run_slurm([task], tmp_path, SlurmOptions(partition="gpu"), reported.append, logged.append,
                        cluster="debug", poll_s=0.1)
    assert [r.status for r in results] == [TRAINED] and reported == results
    assert store.is_done(tmp_path / cfg.run_id) and (tmp_path / "_slurm").is_dir()
    assert "submitted 1 job(s) to debug" in logged[0]
    result = bench("grid", "fmnist-quick", "--dry-run", "--out", tmp_path, "--executor", "slurm")
    assert result.exit_code == 0


def test_slurm_cli_skips_finished_runs(tmp_path, grid_file):
    for cfg in tiny_configs():
        record = {"attacks": {"clean": {"acc": 0.5}}}
        store.write_json(tmp_path / cfg.run_id / store.eval_file("last"), record)
        store.mark_done(tmp_path / cfg.run_id)
    result = bench("grid", grid_file, "--out", tmp_path, "--executor", "slurm", "--cluster", "debug",
                   "--time", "5", *TINY_FLAGS)
    assert result.exit_code == 0, result.output
    assert "running 0 (slurm)" in result.output and not (tmp_path / "_slurm").exists()


def test_slurm_options_merge_file_and_flags():
    options = SlurmOptions.merge({"partition": "a100", "time": 60, "options": {"mail-type": "END"}},
                                 {"time": 30, "gpus": None, "options": {"exclusive": True}})
    assert options == SlurmOptions(partition="a100", time=30, options={"mail-type": "END", "exclusive": True})
    with pytest.raises(InputError, match=r"slurm time \(--time or \[slurm\] time\) must be a whole number"):
        SlurmOptions.merge({"time": "1h"}, {})
    result = bench("grid", "fmnist-quick", "--partition", "gpu")
    assert result.exit_code == 2 and "--executor slurm" in result.output


@pytest.mark.parametrize(("state", "has_result", "ended"), [
    ("RUNNING", True, False),  # written by a job that is requeuing itself: the requeued job writes the last one
    ("REQUEUED", True, False), ("PENDING", True, False), ("COMPLETING", True, False), ("RUNNING", False, False),
    ("COMPLETED", True, True), ("FAILED", False, True), ("TIMEOUT", False, True), ("gone", False, True),
    (None, True, True), (None, False, False),  # squeue cannot be asked: the result file decides
])
def test_a_slurm_job_is_over_when_squeue_says_so(state, has_result, ended):
    assert job_ended(state, has_result) is ended


def test_slurm_options_become_submitit_parameters():
    options = SlurmOptions.merge({"mem": "16G", "qos": "high", "max_retries": 5},
                                 {"account": "lab", "constraint": "a100", "time": 2,
                                  "options": parse_options(["mail_type=END", "exclusive"])})
    params = options.parameters()
    assert params["slurm_mem"] == "16G" and params["slurm_qos"] == "high" and params["slurm_account"] == "lab"
    assert params["slurm_constraint"] == "a100" and params["timeout_min"] == 2 and "slurm_partition" not in params
    assert params["slurm_additional_parameters"] == {"mail-type": "END", "exclusive": True}
    assert params["slurm_signal_delay_s"] == 30 and SlurmOptions().parameters()["slurm_signal_delay_s"] == 90
    assert options.max_retries == 5 and SlurmOptions().max_retries == 3


@pytest.mark.parametrize("file, flags, message", [
    ({"mem": "16GB"}, {}, "must be a size such as 16G"),
    ({"max_retries": -1}, {}, "must be a whole number >= 0"),
    ({"account": ""}, {}, "must be a non-empty string"),
    ({"options": "mail-type=END"}, {}, "must be a table of sbatch options"),
    ({"options": {"output": "x.log"}}, {}, "is set by ltbench itself"),
    ({}, {"options": {"Mail Type": "END"}}, "expected an sbatch option name"),
    ({}, {"cpus": 0}, "cpus (--cpus or [slurm] cpus) must be a whole number >= 1"),
])
def test_bad_slurm_options_name_the_fix(file, flags, message):
    with pytest.raises(InputError, match=re.escape(message)):
        SlurmOptions.merge(file, flags)


def test_a_slurm_job_requeues_itself_at_most_max_retries_times(tmp_path):
    job, task = SlurmRun(max_retries=2), RunTask(tiny_configs()[0], tmp_path, None, "auto")
    for left in (1, 0):
        again = job.checkpoint(task)
        assert again.function is job and again.args == (task,) and job.retries_left == left
    with pytest.raises(BenchError, match=r"preempted 3 times \(--max-retries 2\); rerun the grid"):
        job.checkpoint(task)


def test_slurm_job_threads_follow_the_job_cpus(monkeypatch):
    monkeypatch.setenv("SLURM_CPUS_PER_TASK", "3")
    assert job_cpus() == 3
    monkeypatch.delenv("SLURM_CPUS_PER_TASK")
    assert job_cpus() is None


def test_local_worker_devices_and_threads():
    assert worker_device("cpu", 3) == "cpu"
    cores = len(os.sched_getaffinity(0))
    assert all(1 <= cpu_threads(n) and (n > cores or n * cpu_threads(n) <= cores) for n in (1, 2, 3, 64))
    with pytest.raises(InputError):
        run_local([], 0, print)


@pytest.mark.parametrize(("cores", "runs", "workers", "threads"), [(16, 100, 16, 1), (16, 3, 3, 5), (2, None, 2, 1),
                                                                  (1, 8, 1, 1)])
def test_auto_workers_on_a_cpu_is_one_per_core(cores, runs, workers, threads):
    choice = choose_cpu_workers(cores, runs)
    assert choice.workers == workers and cpu_threads(workers, cores) == threads
    assert f"one worker per core, {cores} cores" in choice.reason
    assert f"; {threads} torch thread{'s' * (threads > 1)} each)" in choice.reason


@pytest.mark.parametrize(("free_gib", "devices", "runs", "workers", "says"), [
    (139, 1, 100, 4, "139.0 GiB free / 8 GiB per run = 17, capped at 4 per device"),  # an H200: the cap binds
    (20, 1, 100, 2, "20.0 GiB free / 8 GiB per run = 2)"),  # memory binds
    (4, 1, 10, 1, "= 0, but at least 1"),
    (80, 2, 100, 8, "80.0 GiB free on each of 2 devices"),  # 4 per device, dealt round the devices
    (80, 2, 5, 5, "capped at the 5 runs to do"),
])
def test_auto_workers_on_cuda_from_free_memory_and_the_cap(free_gib, devices, runs, workers, says):
    assert CUDA_WORKERS_CAP == 4
    choice = choose_cuda_workers(free_gib * 1024, devices, runs, run_mib=8192)
    assert choice.workers == workers and says in choice.reason, choice.reason


def test_auto_workers_takes_the_per_run_estimate_and_cap_given():
    assert choose_cuda_workers(48 * 1024, 1, None, run_mib=4096, cap=16).workers == 12


def test_grid_accepts_workers_auto_and_logs_the_choice(tmp_path, grid_file, cifar_root, monkeypatch):
    used = []

    def fake_run_local(tasks, workers, report):
        used.append(workers)
        return [RunResult(task.config.run_id, TRAINED) for task in tasks]

    monkeypatch.setattr("bench.grid.executors.cpu_cores", lambda: 3)
    monkeypatch.setattr("bench.cli.execute.run_local", fake_run_local)
    result = bench("grid", grid_file, "--out", tmp_path, "--data-root", cifar_root, "--workers", "auto", *TINY_FLAGS)
    assert result.exit_code == 0, result.output
    assert used == [2]
    assert "--workers auto: 2 (cpu: one worker per core, 3 cores, capped at the 2 runs to do; 1 torch thread " \
           "each)" in result.output
    bad = bench("grid", grid_file, "--out", tmp_path, "--workers", "many", "--dry-run")
    assert bad.exit_code == 2 and "--workers takes a number of workers >= 1 or auto, got 'many'" in bad.output


# --- report ----------------------------------------------------------------------------------------------

def test_report_command_calls_write_report(tmp_path, monkeypatch):
    calls = []

    def fake_write_report(results_dir, out_dir, checkpoint="last", warn=None):
        calls.append((Path(results_dir), Path(out_dir), checkpoint))
        return Path(out_dir) / "index.md"

    monkeypatch.setattr("bench.report.write_report", fake_write_report)
    result = bench("report", tmp_path, "-o", tmp_path / "reports" / "main", "--checkpoint", "best")
    assert result.exit_code == 0, result.output
    assert calls == [(tmp_path, tmp_path / "reports" / "main", "best")]
    assert str(tmp_path / "reports" / "main" / "index.md") in result.output
    assert bench("report", tmp_path / "missing").exit_code == 2


def test_a_method_can_sweep_a_config_field_and_rules_can_match_it():
    grid = parse_grid('datasets = ["cifar10"]\narchs = ["cnn-small"]\nurs = [10, 100]\n'
                      'methods = ["pgd-at", "at-bsl"]\n[sweep.at-bsl]\naugment = ["crop-flip", "ra-crop-flip"]\n'
                      '[[exclude]]\nur = 10\n"at-bsl.augment" = "ra-crop-flip"\n', "test")
    runs = expand(grid, fields={"epochs": 2})
    assert sorted((c.method, c.ur, c.augment) for c in runs) == [
        ("at-bsl", 10.0, "crop-flip"), ("at-bsl", 100.0, "crop-flip"), ("at-bsl", 100.0, "ra-crop-flip"),
        ("pgd-at", 10.0, "crop-flip"), ("pgd-at", 100.0, "crop-flip")]
    assert {c.epochs for c in runs} == {2}
    with pytest.raises(InputError, match="no parameter 'augmnt' or a config field"):
        parse_grid('datasets = ["cifar10"]\narchs = ["cnn-small"]\nurs = [10]\nmethods = ["at-bsl"]\n'
                   '[sweep.at-bsl]\naugmnt = ["none"]\n', "test")


def test_bf16_numerics_trains_each_run_in_both_precisions():
    runs = expand(load_grid("bf16-numerics"))
    pairs = {(c.method, c.seed): set() for c in runs}
    for c in runs:
        pairs[(c.method, c.seed)].add(c.precision)
    assert pairs == {(m, s): {"fp32", "bf16"} for m in ("pgd-at", "reat") for s in (0, 1, 2)}


def test_a_grid_sweeps_robustlt_next_to_its_base():
    text = """
datasets = ["fashion-mnist"]
archs = ["cnn-small"]
urs = [100]
methods = ["at-bsl", "robustlt+at-bsl"]
seeds = [0]
[sweep]
"robustlt+at-bsl".robustlt_alpha = [0.2, 0.4]
"""
    runs = expand(parse_grid(text, "t"))
    assert [(c.method, c.method_params.get("robustlt_alpha")) for c in runs] == [
        ("at-bsl", None), ("robustlt+at-bsl", 0.2), ("robustlt+at-bsl", 0.4)]
