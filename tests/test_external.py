"""Outside models: weight formats, strict loading, `bench eval --model` into an external run folder that the
report reads, the REAT-layout ResNet-18 checkpoint against the same weights as an ltbench run, and bench.api."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from conftest import TINY
from reat_resnet import from_ltbench
from torch import nn

from bench import api
from bench.cli import main
from bench.core import store
from bench.core.errors import InputError
from bench.runs.external import load_weights, read_state_dict

EVAL = ["--dataset", "cifar10", "--ur", "10", "--n", "20", "--attacks", "clean,pgd20", "--no-progress"]


def linear(num_classes: int = 10) -> nn.Module:
    """The outside model of these tests: a linear classifier on the flattened 3x32x32 image."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, num_classes))


@pytest.mark.parametrize("wrap", [
    lambda s: s,
    lambda s: {"epoch": 3, "state_dict": s, "best_acc": 0.5},
    lambda s: {"model": s, "optimizer": {"lr": 0.1}},
    lambda s: {"net": {f"module.{k}": v for k, v in s.items()}},
])
def test_weight_formats(tmp_path, wrap):
    state = linear().state_dict()
    torch.save(wrap(state), tmp_path / "w.pt")
    loaded = read_state_dict(tmp_path / "w.pt")
    assert loaded.keys() == state.keys() and all(torch.equal(loaded[k], state[k]) for k in state)


@pytest.mark.parametrize(("saved", "message"), [
    ({"1.weight": torch.zeros(10, 3072)}, "do not fit the model (missing keys: 1.bias); check the factory"),
    ({**linear().state_dict(), "2.weight": torch.zeros(1)}, "(unexpected keys: 2.weight)"),
    ({"1.weight": torch.zeros(5, 3072), "1.bias": torch.zeros(5)},
     "(size mismatch for 1.weight: copying a param with shape torch.Size([5, 3072]) from checkpoint, the shape in "
     "current model is torch.Size([10, 3072]); and 1 more); check the factory or the checkpoint"),
    ({"epoch": 3, "optimizer": {"lr": 0.1}}, "a checkpoint dict without state_dict, model, net; its keys: epoch"),
])
def test_strict_loading_is_one_line(tmp_path, saved, message):
    torch.save(saved, tmp_path / "w.pt")
    with pytest.raises(InputError, match="^--weights") as err:
        load_weights(linear(), tmp_path / "w.pt")
    assert message in str(err.value) and "\n" not in str(err.value)


def test_eval_of_an_outside_model_is_a_run_folder_the_report_reads(tmp_path, cifar_root, monkeypatch):
    monkeypatch.syspath_prepend(str(Path(__file__).parent))
    torch.save({"state_dict": {f"module.{k}": v for k, v in linear().state_dict().items()}}, tmp_path / "w.pt")
    out = tmp_path / "results"
    args = ["eval", "--model", "test_external:linear", "--weights", str(tmp_path / "w.pt"), "--label", "lin",
            "--out", str(out), "--data-root", str(cifar_root), *EVAL]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    (run_dir,) = out.iterdir()
    meta = json.loads((run_dir / "config.json").read_text())
    sha = __import__("hashlib").sha256((tmp_path / "w.pt").read_bytes()).hexdigest()
    assert meta["external"] == {"model": "test_external:linear", "arch": None, "weights": "w.pt", "weights_sha256": sha}
    assert meta["config"]["dataset"] == "cifar10" and meta["config"]["ur"] == 10 and meta["config"]["method"] == "lin"
    assert meta["class_counts"][0] == 20 and meta["class_counts"][-1] == 2  # UR 10 sets the class counts
    assert store.is_done(run_dir)
    record = json.loads((run_dir / "eval.json").read_text())
    assert record["n_test"] == 20 and set(record["attacks"]) == {"clean", "pgd20"}
    smaller = CliRunner().invoke(main, [*args, "--attacks", "pgd20", "--eps", "1/255"])
    assert smaller.exit_code == 0, smaller.output
    kept = json.loads((run_dir / "eval.json").read_text())
    assert kept["attacks"] == record["attacks"] and kept["eps"] == 8 / 255, "the first evaluation's radius stays"
    assert [(b["eps"], list(b["attacks"])) for b in kept["protocols"]] == [(1 / 255, ["pgd20"])]
    # the API evaluates the same weights in a Python object to the same numbers, and reads the CLI's files
    model = linear()
    model.load_state_dict(read_state_dict(tmp_path / "w.pt"))
    same = api.evaluate(model, dataset="cifar10", ur=10, attacks=["clean", "pgd20"], n=20, device="cpu",
                        out=tmp_path / "api", data_root=str(cifar_root), label="lin")
    assert {k: v["correct_bits"] for k, v in same["attacks"].items()} == \
        {k: v["correct_bits"] for k, v in record["attacks"].items()}
    df = api.load_results(out)
    assert set(df["method"]) == {"lin"} and set(df["arch"]) == {"external"}
    assert set(df["precision"]) == {"outside model"}
    assert df.set_index("attack")["acc"].to_dict() == {k: v["acc"] for k, v in record["attacks"].items()}


def grey_conv() -> nn.Module:
    """An outside model for one-channel images, which CIFAR-10's three channels do not fit."""
    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.Flatten(), nn.Linear(4 * 30 * 30, 10))


def five_classes() -> nn.Module:
    """An outside model with 5 outputs for a 10-class dataset."""
    return linear(5)


@pytest.mark.parametrize(("args", "message"), [
    (["--model", "test_external:grey_conv", "--dataset", "cifar10"],
     "--model test_external:grey_conv does not run on cifar10 images (2, 3, 32, 32) in [0, 1] (RuntimeError: "),
    (["--model", "test_external:five_classes", "--dataset", "cifar10"],
     "--model test_external:five_classes returns (2, 5) for 2 cifar10 images; it must return logits of shape (N, 10)"),
    (["--weights", "w.pt", "--dataset", "cifar10"], "an outside model needs --model PKG.MODULE:FACTORY, or --arch A"),
    (["--model", "nope", "--dataset", "cifar10"], "--model expects PKG.MODULE:FACTORY"),
    (["--model", "no_such_module_xyz:f", "--dataset", "cifar10"], "cannot import no_such_module_xyz"),
    (["--model", "test_external:linear"], "an outside model needs --dataset"),
    (["results", "--model", "test_external:linear", "--dataset", "cifar10"], "take no TARGET"),
    ([], "bench eval needs a TARGET"),
])
def test_bad_outside_model_input(tmp_path, cifar_root, args, message):
    result = CliRunner().invoke(main, ["eval", *args, "--ur", "10", "--out", str(tmp_path / "r"),
                                       "--data-root", str(cifar_root)])
    assert result.exit_code == 2 and message in result.output and len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "r").exists()


@pytest.mark.slow
def test_an_official_reat_resnet18_checkpoint_gives_the_numbers_of_the_same_weights_as_an_ltbench_run(
        tmp_path, cifar_root, monkeypatch):
    monkeypatch.syspath_prepend(str(Path(__file__).parent))
    out = tmp_path / "results"
    ran = CliRunner().invoke(main, ["run", "--methods", "pgd-at", "--arch", "resnet18", "--out", str(out),
                                    "--data-root", str(cifar_root), "--no-report", *TINY])
    assert ran.exit_code == 0, ran.output
    (run_dir,) = out.iterdir()
    state = store.load_checkpoint(run_dir / "ckpt" / "last.pt")["model"]
    # as the official REAT code saves it: model wrapped in DataParallel, under "state_dict" with the epoch
    official = {"epoch": 1, "state_dict": {f"module.{k}": v for k, v in from_ltbench(state).items()}, "best_acc": 0}
    torch.save(official, tmp_path / "reat_official.pt")
    args = ["eval", "--model", "reat_resnet:ResNet18", "--arch", "resnet18", "--weights",
            str(tmp_path / "reat_official.pt"), "--out", str(out), "--data-root", str(cifar_root), *EVAL]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    external = json.loads(next(out.glob("*-reat_official-external-*/eval.json")).read_text())
    trained = json.loads((run_dir / "eval.json").read_text())
    for attack in ("clean", "pgd20"):
        assert external["attacks"][attack]["correct_bits"] == trained["attacks"][attack]["correct_bits"]
        assert external["attacks"][attack]["per_class_acc"] == trained["attacks"][attack]["per_class_acc"]
    df = api.load_results(out)
    assert set(df["method"]) == {"pgd-at", "reat_official"} and set(df["arch"]) == {"resnet18"}


@pytest.mark.slow
def test_api_run_and_load_results_read_what_the_cli_wrote(tmp_path, tiny_args):
    out = tmp_path / "results"
    ran = CliRunner().invoke(main, ["run", "--methods", "pgd-at", "--out", str(out), *tiny_args])
    assert ran.exit_code == 0, ran.output
    (run_dir,) = out.iterdir()
    data_root = tiny_args[tiny_args.index("--data-root") + 1]
    records = api.run("pgd-at", dataset="cifar10", ur=10, preset="smoke", eval_n=20, out=out, data_root=data_root,
                      settings={"steps": 1, "epoch_eval_n": 20, "batch_size": 32})
    assert records == {run_dir.name: json.loads((run_dir / "eval.json").read_text())}  # the same run, not retrained
    df = api.load_results(out)
    assert df.set_index("attack")["acc"].to_dict() == {k: v["acc"] for k, v in records[run_dir.name]["attacks"].items()}
