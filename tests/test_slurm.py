"""`bench grid --executor slurm` against a running one-node SLURM cluster (the ``slurm_cluster`` fixture):
one job array, its options as SLURM sees them, failures, cancellation and time-outs with requeue."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner
from slurm_cluster import FEATURE, SlurmCluster

from bench.cli import main
from bench.core import store
from bench.core.precision import resolve_precision
from bench.grid.slurm import JOBS_FILE
from bench.grid.spec import expand, load_grid

pytestmark = pytest.mark.slow

GRID = """
datasets = ["cifar10"]
archs = ["cnn-small"]
urs = {urs}
methods = {methods}
preset = "smoke"
eval_n = 10

[set]
epochs = {epochs}
epoch_eval_n = 10
batch_size = 32
steps = 1
"""
#: the cluster's node and its one partition; --device auto resolves on the node
FLAGS = ["--executor", "slurm", "--partition", "debug", "--gpus", "0", "--cpus", "1", "--no-progress"]


def grid_file(folder: Path, urs: list[int], methods: list[str], epochs: int = 1) -> Path:
    path = folder / "grid.toml"
    path.write_text(GRID.format(urs=urs, methods=json.dumps(methods), epochs=epochs))
    return path


def start_grid(grid: Path, out: Path, data_root: Path, *flags: str) -> subprocess.Popen:
    """`bench grid` in its own process (it waits for its jobs), so the test can watch the queue meanwhile."""
    args = ["grid", grid, "--out", out, "--data-root", data_root, *FLAGS, *flags]
    return subprocess.Popen([sys.executable, "-c", "from bench.cli import main; main()", *map(str, args)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def finish(process: subprocess.Popen, timeout_s: float = 600) -> tuple[int, str]:
    output, _ = process.communicate(timeout=timeout_s)
    return process.returncode, output


def job_ids(out: Path) -> dict[str, str]:
    """run id -> SLURM job id, as the grid recorded them."""
    path = out / "_slurm" / JOBS_FILE
    return json.loads(path.read_text()) if path.exists() else {}


def wait_for(ready: Callable[[], bool], process: subprocess.Popen, what: str, timeout_s: float = 300) -> None:
    deadline = time.monotonic() + timeout_s
    while not ready():
        if process.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(f"never saw {what}; bench grid: {finish(process)}")
        time.sleep(0.5)


def job_log(out: Path, job_id: str) -> str:
    return "".join(p.read_text() for p in sorted((out / "_slurm").glob(f"{job_id}_*_log.*")))


@pytest.fixture(scope="module")
def epoch_s(tmp_path_factory: pytest.TempPathFactory, cifar_root: Path) -> float:
    """Seconds an epoch of the tests' runs takes on this machine (the fastest of two), so that a test can size a
    run to outlast a time-out signal or a cancellation on fast and busy machines alike."""
    folder = tmp_path_factory.mktemp("calibration")
    result = CliRunner().invoke(main, ["grid", str(grid_file(folder, [10], ["pgd-at"], epochs=2)), "--out",
                                       str(folder / "out"), "--data-root", str(cifar_root), "--device", "cpu",
                                       "--no-progress"])
    assert result.exit_code == 0, result.output
    (metrics,) = (folder / "out").glob("*/metrics.jsonl")
    return min(json.loads(line)["seconds"] for line in metrics.read_text().splitlines())


def eval_numbers(run_dir: Path) -> dict[str, float]:
    record = store.read_json(run_dir / "eval.json")
    return {key: attack["acc"] for key, attack in record["attacks"].items()}


def test_a_grid_is_one_job_array_run_one_at_a_time_with_the_options_asked_for(
    tmp_path, cifar_root, slurm_cluster: SlurmCluster,
):
    grid, out = grid_file(tmp_path, [10], ["pgd-at", "at-bsl", "trades"]), tmp_path / "out"
    started = time.monotonic()
    process = start_grid(grid, out, cifar_root, "--time", "5", "--mem", "600M", "--constraint", FEATURE,
                         "--slurm-option", "comment=ltbench-test", "--array-parallelism", "1")
    wait_for(lambda: len(job_ids(out)) == 3, process, "the submitted jobs")
    jobs = job_ids(out)
    running, details, dry_run = 0, {}, ""
    while process.poll() is None:
        states = {job: slurm_cluster.jobs().get(job) for job in jobs.values()}
        now = [job for job, state in states.items() if state == "RUNNING"]
        running = max(running, len(now))
        if now and not details:
            details = slurm_cluster.job(now[0])
            dry_run = CliRunner().invoke(main, ["grid", str(grid), "--dry-run", "--out", str(out)]).output
        time.sleep(0.5)
    code, output = finish(process)
    wall = time.monotonic() - started
    print(f"3-run SLURM grid: {wall:.1f} s wall; jobs {jobs}")
    assert code == 0, output
    assert len({job.split("_")[0] for job in jobs.values()}) == 1  # one array
    assert running == 1 and details["ArrayTaskThrottle"] == "1"
    assert details["Partition"] == "debug" and details["TimeLimit"] == "00:05:00"
    assert details["NumCPUs"] == "1" and details["MinMemoryNode"] == "600M" and details["Features"] == FEATURE
    assert details["Comment"] == "ltbench-test"
    assert "RUNNING" in dry_run and "slurm job" in dry_run
    # the runs are the ones a local grid plans: precision stays `auto` in the config and the run id, and the
    # job resolved it, the device and one torch thread per CPU of the job on the node
    local = expand(load_grid(str(grid)))
    assert sorted(jobs) == sorted(cfg.run_id for cfg in local)
    on_node = resolve_precision("auto", "cpu")
    for run_id in jobs:
        assert store.is_done(out / run_id)
        assert store.read_json(out / run_id / store.CONFIG_FILE)["config"]["precision"] == "auto"
        epochs = [json.loads(line) for line in (out / run_id / "metrics.jsonl").read_text().splitlines()]
        assert epochs[-1]["device"] == "cpu (1 threads)" and epochs[-1]["precision"] == on_node


def test_a_failing_run_is_marked_failed_and_the_grid_goes_on(tmp_path, cifar_root, slurm_cluster):
    grid, out = grid_file(tmp_path, [10, 1000], ["pgd-at"]), tmp_path / "out"
    code, output = finish(start_grid(grid, out, cifar_root, "--time", "5"))
    good, bad = (out / cfg.run_id for cfg in expand(load_grid(str(grid))))
    assert code == 1 and "1 of 2 runs failed" in output, output
    assert store.run_status(bad) == "failed" and store.is_done(good)


def test_a_cancelled_job_resumes_when_the_same_command_runs_again(tmp_path, cifar_root, slurm_cluster, epoch_s):
    epochs = max(8, math.ceil(15 / epoch_s))  # it outlasts the cluster's KillWait (5 s) after the cancel
    grid, out = grid_file(tmp_path, [10], ["pgd-at"], epochs=epochs), tmp_path / "out"
    (run_id,) = (cfg.run_id for cfg in expand(load_grid(str(grid))))
    process = start_grid(grid, out, cifar_root, "--time", "5")
    wait_for(lambda: (out / run_id / "ckpt" / "last.pt").exists(), process, "a checkpoint")
    job = job_ids(out)[run_id]
    slurm_cluster.run("scancel", job)
    code, output = finish(process)
    assert code == 1 and f"job {job} ended CANCELLED" in output, output
    assert store.run_status(out / run_id) == "partial"
    code, output = finish(start_grid(grid, out, cifar_root, "--time", "5"))
    assert code == 0 and "trained" in output, output
    second = job_ids(out)[run_id]
    assert second != job and f"pgd-at epoch 1/{epochs}" not in job_log(out, second.split("_")[0])
    lines = (out / run_id / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == list(range(epochs))


def test_a_job_that_hits_its_time_limit_is_requeued_and_resumes_to_the_same_numbers(
    tmp_path, cifar_root, slurm_cluster, epoch_s,
):
    """The job has a one-minute limit; SLURM signals it 15 to 45 s after its start (its checks run every 30 s),
    submitit requeues it (same job id) and the run resumes from its last epoch. The run trains for about 60 s, so
    the signal finds it training; once requeued its limit is raised, so that the test takes one requeue, not one
    per minute of training."""
    epochs = max(4, math.ceil(60 / epoch_s))
    grid, out = grid_file(tmp_path, [10], ["pgd-at"], epochs=epochs), tmp_path / "out"
    (run_id,) = (cfg.run_id for cfg in expand(load_grid(str(grid))))
    started = time.monotonic()
    process = start_grid(grid, out, cifar_root, "--time", "1", "--max-retries", "2")
    reference = subprocess.Popen(  # uninterrupted, on this machine, with one thread like the job
        [sys.executable, "-c", "from bench.cli import main; main()", "grid", str(grid), "--out",
         str(tmp_path / "reference"), "--data-root", str(cifar_root), "--device", "cpu", "--no-progress"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=os.environ | {"OMP_NUM_THREADS": "1"})
    wait_for(lambda: run_id in job_ids(out), process, "the job")
    job, seen = job_ids(out)[run_id], []

    def restarts() -> int:
        """The job's restarts so far, noting each new state and restart count with its time."""
        info = slurm_cluster.job(job)
        state = (info["JobState"], int(info["Restarts"]))
        if not seen or seen[-1][1:] != state:
            seen.append((round(time.monotonic() - started), *state))
        return state[1]

    wait_for(lambda: restarts() > 0, process, f"a requeue (training {epochs} epochs of {epoch_s:.2f} s)", 150)
    slurm_cluster.run("scontrol", "update", f"JobId={job}", "TimeLimit=10")
    while process.poll() is None:
        restarts()
        time.sleep(0.5)
    code, output = finish(process)
    restarts()
    print(f"time-out sequence of job {job} (s since submission, state, restarts): {seen}")
    assert code == 0 and "trained" in output, output
    assert seen[-1][1:] == ("COMPLETED", 1) and "Requeued job" in job_log(out, job.split("_")[0])
    assert job_log(out, job.split("_")[0]).count(f"pgd-at epoch 1/{epochs}") == 1  # resumed, not restarted
    lines = (out / run_id / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == list(range(epochs))
    assert finish(reference)[0] == 0
    assert eval_numbers(out / run_id) == eval_numbers(tmp_path / "reference" / run_id)
