"""Fault injection with real processes and signals: kills, Ctrl-C, concurrent runs, damaged files, failed
writes and NaN losses. Every scenario ends with the numbers of an uninterrupted run, or a one-line error."""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from conftest import TINY

from bench.cli import main
from bench.core import store

pytestmark = pytest.mark.slow  # every scenario trains

EPOCHS = 3
#: a tiny run whose evaluation includes every attack but AutoAttack
ARGS = [*TINY, "--epochs", str(EPOCHS), "--suite", "fast", "--device", "cpu", "--no-report"]
TIMEOUT = 300
#: Ctrl-C raises KeyboardInterrupt as in a terminal, also when the tests run in a background job (which
#: starts its children with SIGINT ignored)
SIGINT_AS_IN_A_TERMINAL = "import signal; signal.signal(signal.SIGINT, signal.default_int_handler)\n"
#: `bench` in a fresh interpreter (PYTHONPATH and the rest of the environment are inherited)
BENCH = [sys.executable, "-c", SIGINT_AS_IN_A_TERMINAL + "import sys; from bench.cli import main; sys.exit(main())"]
#: the same, with the Nth checkpoint write stopping half way through its temp file, creating sys.argv[1], hanging
HANGING_SAVE = SIGINT_AS_IN_A_TERMINAL + """
import sys, time
from bench.core import store
marker, nth = sys.argv[1], int(sys.argv[2])
del sys.argv[1:3]
real_write, calls = store.write_bytes, [0]
def half_then_hang(fh, data):
    fh.write(data[: len(data) // 2])
    fh.flush()
    open(marker, "w").close()
    time.sleep(600)
def write_bytes(path, data):
    calls[0] += path.suffix == ".pt"
    if path.suffix == ".pt" and calls[0] == nth:
        store._atomic(path, lambda fh: half_then_hang(fh, data))
    return real_write(path, data)
store.write_bytes = write_bytes
from bench.cli import main
sys.exit(main())
"""

#: the same, with every ``torch.save`` a second slower, so the run surely outlasts other processes' start-up
SLOW_SAVE = SIGINT_AS_IN_A_TERMINAL + """
import sys, time, torch
real_save = torch.save
def save(*args, **kwargs):
    time.sleep(1.0)
    return real_save(*args, **kwargs)
torch.save = save
from bench.cli import main
sys.exit(main())
"""


def env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def start(args: list[str], prefix: list[str] = BENCH) -> subprocess.Popen:
    return subprocess.Popen([*prefix, *map(str, args)], env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def wait_for(condition: Callable[[], bool], proc: subprocess.Popen, what: str) -> None:
    """Poll until ``condition`` holds; fail if ``proc`` ends first or after TIMEOUT seconds."""
    deadline = time.monotonic() + TIMEOUT
    while not condition():
        if proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"the process ended (code {proc.returncode}) before {what}:\n{out}\n{err}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.01)


def finish(proc: subprocess.Popen) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=TIMEOUT)
    return proc.returncode, out, err


def run_args(out: Path, cifar_root: Path, extra: tuple[str, ...] = ()) -> list[str]:
    return ["run", "--methods", "at-bsl", "--out", str(out), "--data-root", str(cifar_root), *ARGS, *extra]


def only_run(out: Path) -> Path:
    (run_dir,) = [p for p in out.iterdir() if p.is_dir()]
    return run_dir


def numbers(run_dir: Path) -> dict[str, list[int]]:
    """Per attack: the per-class correct counts of eval.json (what must not change)."""
    record = json.loads((run_dir / "eval.json").read_text())
    return {key: res["per_class_correct"] for key, res in record["attacks"].items()}


def same_weights(a: Path, b: Path) -> bool:
    wa, wb = (torch.load(d / "ckpt" / "last.pt", weights_only=True)["model"] for d in (a, b))
    return wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


def losses(run_dir: Path) -> list[float]:
    return [json.loads(line)["loss"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory, cifar_root: Path) -> Path:
    """The run finished without interruption, in a subprocess like the others."""
    out = tmp_path_factory.mktemp("reference")
    code, stdout, stderr = finish(start(run_args(out, cifar_root)))
    assert code == 0, stderr
    return only_run(out)


def assert_like_reference(run_dir: Path, reference: Path) -> None:
    assert store.is_done(run_dir) and not (run_dir / "failed").exists()
    assert numbers(run_dir) == numbers(reference)
    assert losses(run_dir) == losses(reference)
    assert same_weights(run_dir, reference)
    assert not list(run_dir.rglob("*.tmp")) and not (run_dir / "lock").exists()


# --- SIGKILL ------------------------------------------------------------------------------------------------

def test_sigkill_during_training_then_rerun_gives_the_same_numbers(tmp_path, cifar_root, reference):
    out = tmp_path / "r"
    proc = start(run_args(out, cifar_root))
    metrics = out / reference.name / "metrics.jsonl"
    wait_for(lambda: metrics.exists() and len(metrics.read_text().splitlines()) >= 1, proc, "epoch 1 ended")
    proc.send_signal(signal.SIGKILL)
    proc.wait(TIMEOUT)
    run_dir = out / reference.name
    assert not store.is_done(run_dir) and store.run_status(run_dir) == "partial"  # the dead pid's lock is stale
    code, stdout, stderr = finish(start(run_args(out, cifar_root)))
    assert code == 0, stderr
    assert "took over the stale lock" in stderr
    assert_like_reference(run_dir, reference)


def test_sigkill_during_evaluation_then_rerun_gives_the_same_numbers(tmp_path, cifar_root, reference):
    out = tmp_path / "r"
    args = run_args(out, cifar_root, ("--suite", "full"))
    proc = start(args)
    eval_json = out / reference.name / "eval.json"
    wait_for(eval_json.exists, proc, "the first attack was saved")
    proc.send_signal(signal.SIGKILL)
    proc.wait(TIMEOUT)
    run_dir = out / reference.name
    saved = json.loads(eval_json.read_text())["attacks"]
    assert "clean" in saved and "aa" not in saved and not store.is_done(run_dir)
    code, stdout, stderr = finish(start(args))
    assert code == 0, stderr
    assert "(done earlier, same settings)" in stderr  # the saved attacks were not run again
    record = json.loads(eval_json.read_text())
    assert list(record["attacks"]) == ["clean", "fgsm", "pgd20", "pgd100", "cw100", "aa"]
    assert record["attacks"]["clean"] == saved["clean"]
    assert {k: v for k, v in numbers(run_dir).items() if k in ("clean", "pgd20")} == numbers(reference)
    assert losses(run_dir) == losses(reference) and same_weights(run_dir, reference)


def test_sigkill_during_a_checkpoint_write_then_rerun_gives_the_same_numbers(tmp_path, cifar_root, reference):
    out = tmp_path / "r"
    marker = tmp_path / "half-written"
    # saves: best.pt and last.pt of epoch 1, then best.pt (or last.pt) of epoch 2: kill that one half way
    proc = start([str(marker), "3", *run_args(out, cifar_root)], prefix=[sys.executable, "-c", HANGING_SAVE])
    wait_for(marker.exists, proc, "half a checkpoint was written")
    proc.send_signal(signal.SIGKILL)
    proc.wait(TIMEOUT)
    run_dir = out / reference.name
    assert list((run_dir / "ckpt").glob(".*.tmp")), "the half-written temporary file is left behind"
    assert store.load_checkpoint(run_dir / "ckpt" / "last.pt")["epoch"] == 0  # the previous one is intact
    code, stdout, stderr = finish(start(run_args(out, cifar_root)))
    assert code == 0, stderr
    assert_like_reference(run_dir, reference)


# --- Ctrl-C during AutoAttack ----------------------------------------------------------------------------------

def test_sigint_during_autoattack_keeps_finished_attacks(tmp_path, cifar_root, reference):
    run_dir = tmp_path / reference.name
    shutil.copytree(reference, run_dir)
    # eps 0: AutoAttack breaks nothing and so runs every one of its attacks on every correct image (seconds)
    args = ["eval", run_dir, "--attacks", "clean,pgd20,aa", "--eps", "0", "--data-root", cifar_root,
            "--device", "cpu", "--no-progress"]
    proc = start(args)
    eval_json = run_dir / "eval.json"
    own = json.loads(eval_json.read_text())["attacks"]

    def at_eps_0(record: dict) -> dict:
        """The results at eps 0, kept apart from those at the run's own eps."""
        return next((b["attacks"] for b in record.get("protocols", []) if b["eps"] == 0), {})

    def pgd20_saved() -> bool:
        try:
            record = json.loads(eval_json.read_text())
        except (OSError, ValueError):
            return False
        return "pgd20" in at_eps_0(record)

    wait_for(pgd20_saved, proc, "the attacks before AutoAttack were saved")
    time.sleep(0.5)  # inside AutoAttack now
    proc.send_signal(signal.SIGINT)
    code, stdout, stderr = finish(proc)
    assert code == 130, stderr
    assert stderr.strip().splitlines()[-1].startswith("interrupted: ") and "Traceback" not in stderr
    record = json.loads(eval_json.read_text())
    assert list(at_eps_0(record)) == ["pgd20"] and record["attacks"] == own and not (run_dir / "lock").exists()
    code, stdout, stderr = finish(start(args))
    assert code == 0, stderr
    assert stderr.count("(done earlier, same settings)") == 2  # clean and PGD-20 were not run again
    after = json.loads(eval_json.read_text())
    assert list(at_eps_0(after)) == ["pgd20", "aa"] and at_eps_0(after)["pgd20"] == at_eps_0(record)["pgd20"]
    assert at_eps_0(after)["aa"]["acc"] == after["attacks"]["clean"]["acc"] and after["attacks"] == own  # eps 0


# --- two processes, one run ----------------------------------------------------------------------------------

def test_two_runs_of_one_config_train_it_once(tmp_path, cifar_root):
    out = tmp_path / "r"
    args = run_args(out, cifar_root, ("--epochs", "15"))
    first = start(args, prefix=[sys.executable, "-c", SLOW_SAVE])  # holds the run for 30 s or more
    wait_for(lambda: any(out.glob("*/lock")), first, "the first process took the lock")
    second, waiting = start(args), start([*args, "--wait"])
    code, stdout, stderr = finish(second)
    assert code == 1 and f"locked by pid {first.pid}" in stderr and "--wait" in stderr
    assert stderr.strip().splitlines()[-1].startswith("error: ")
    assert finish(first)[0] == 0
    code, stdout, stderr = finish(waiting)
    assert code == 0 and "waiting, locked by pid" in stderr and "done earlier" in stdout
    run_dir = only_run(out)
    assert [json.loads(line)["epoch"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()] == \
        list(range(15))
    assert store.is_done(run_dir) and set(numbers(run_dir)) == {"clean", "pgd20"}


# --- damaged files ---------------------------------------------------------------------------------------------

def cli(*args: str | Path):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.mark.parametrize("damage", ["truncated checkpoint", "corrupt checkpoint", "corrupt metrics.jsonl",
                                    "corrupt eval.json", "truncated eval.json"])
def test_damaged_files_are_one_line_errors_naming_the_fix(tmp_path, cifar_root, reference, damage):
    out = tmp_path / "r"
    run_dir = out / reference.name
    shutil.copytree(reference, run_dir)
    if "eval.json" in damage:
        path = run_dir / "eval.json"
        path.write_bytes(path.read_bytes()[:40] if "truncated" in damage else b"\x00garbage")
    else:
        (run_dir / "done").unlink()  # a killed run: resuming reads the checkpoint and the metrics
        path = run_dir / ("metrics.jsonl" if "metrics" in damage else "ckpt/last.pt")
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2] if "truncated" in damage else b"{not json\n" + data[10:])
    result = cli(*run_args(out, cifar_root))
    assert result.exit_code == 1
    error = result.stderr.strip().splitlines()[-1]
    assert error.startswith("error: ") and str(path) in error and "--force" in error
    assert "Traceback" not in result.output
    if "eval.json" in damage:
        evaluated = cli("eval", run_dir, "--data-root", cifar_root, "--device", "cpu", "--no-progress")
        assert evaluated.exit_code == 1 and str(path) in evaluated.stderr and "--force" in evaluated.stderr
    forced = cli(*run_args(out, cifar_root, ("--force",)))
    assert forced.exit_code == 0, forced.output
    assert_like_reference(run_dir, reference)


# --- writes that fail half way ------------------------------------------------------------------------------

def full_disk_after(monkeypatch: pytest.MonkeyPatch, writes: int) -> None:
    """Every atomic write after the first ``writes`` stops half way with ENOSPC."""
    real_fsync, calls = os.fsync, [0]

    def fsync(fd: int) -> None:
        calls[0] += 1
        if calls[0] > writes:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_fsync(fd)

    monkeypatch.setattr(store.os, "fsync", fsync)


def test_a_full_disk_keeps_the_previous_checkpoint_and_eval(tmp_path, cifar_root, reference, monkeypatch):
    out = tmp_path / "r"
    run_dir = out / reference.name
    shutil.copytree(reference, run_dir)
    (run_dir / "done").unlink()
    before = {p: p.read_bytes() for p in (run_dir / "eval.json", run_dir / "ckpt" / "last.pt")}
    with monkeypatch.context() as patch:
        full_disk_after(patch, 0)
        result = cli("eval", run_dir, "--attacks", "fgsm", "--data-root", cifar_root, "--device", "cpu",
                     "--no-progress")
    assert result.exit_code == 1
    error = result.stderr.strip().splitlines()[-1]
    assert "cannot write" in error and "eval.json" in error and "previous version is kept" in error
    assert all(p.read_bytes() == data for p, data in before.items()) and not list(run_dir.rglob("*.tmp"))



def test_a_full_disk_during_training_keeps_the_last_checkpoint(tmp_path, cifar_root, reference, monkeypatch):
    out = tmp_path / "r"
    with monkeypatch.context() as patch:
        full_disk_after(patch, 4)  # config.json and epoch 1's best.pt, last.pt and metrics.jsonl fit
        result = cli(*run_args(out, cifar_root))
    run_dir = out / reference.name
    assert result.exit_code == 1 and "No space left on device" in result.stderr
    assert "Traceback" not in result.output
    assert store.load_checkpoint(run_dir / "ckpt" / "last.pt")["epoch"] == 0
    assert not list(run_dir.rglob("*.tmp"))  # (the `failed` marker did not fit on the disk either)
    rerun = cli(*run_args(out, cifar_root))  # space freed: resumes from epoch 1's checkpoint
    assert rerun.exit_code == 0, rerun.output
    assert_like_reference(run_dir, reference)


# --- NaN loss in a grid ------------------------------------------------------------------------------------------

def test_nan_loss_fails_one_run_the_grid_goes_on_and_the_report_lists_it(tmp_path, cifar_root, monkeypatch):
    from methods.pgd_at import PGDAT

    grid = tmp_path / "grid.toml"
    grid.write_text('datasets = ["cifar10"]\narchs = ["cnn-small"]\nurs = [10]\nmethods = ["pgd-at", "at-bsl"]\n'
                    'preset = "smoke"\neval_n = 20\n[set]\nepochs = 2\nsteps = 1\nbatch_size = 32\n'
                    'epoch_eval_n = 20\n')
    epochs_done = [0]
    real_loss = PGDAT.train_loss
    monkeypatch.setattr(PGDAT, "end_epoch", lambda self, hist: epochs_done.__setitem__(0, epochs_done[0] + 1))
    monkeypatch.setattr(PGDAT, "train_loss", lambda self, out, y, clean=None: real_loss(self, out, y, clean)
                        * (float("nan") if epochs_done[0] >= 1 else 1.0))
    out = tmp_path / "results"
    result = cli("grid", grid, "--out", out, "--data-root", cifar_root, "--device", "cpu", "--no-progress")
    assert result.exit_code == 1 and "1 of 2 runs failed" in result.stderr
    (failed,) = [d for d in out.iterdir() if "-pgd-at-" in d.name]
    (passed,) = [d for d in out.iterdir() if "-at-bsl-" in d.name]
    assert store.run_status(failed) == "failed" and store.run_status(passed) == "done"
    message = store.failure_message(failed)
    assert "loss became nan in epoch 2, batch 1" in message
    assert "Traceback" in (failed / "failed").read_text()
    assert store.load_checkpoint(failed / "ckpt" / "last.pt")["epoch"] == 0  # the last good checkpoint
    report = cli("report", out, "-o", tmp_path / "report")
    assert report.exit_code == 0, report.output
    index = (tmp_path / "report" / "index.md").read_text()
    assert f"| `{failed.name}` | failed | {message}" in index
