"""The evaluator on a tiny 4-class model: attack sanity, inference path, metrics, resume and the CLI."""

from __future__ import annotations

import copy
import dataclasses
import functools
import json
import logging
import math
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner
from torch import Tensor, nn

import bench.evaluation.suite as ev
from bench.cli import main
from bench.core import store
from bench.core.errors import InputError
from bench.core.progress import Progress
from bench.data.images import to_float
from bench.data.longtail import LongTailData
from bench.evaluation.attacks import pgd
from bench.evaluation.autoattack import AA_PROBE_IMAGES, aa_bytes_per_image, probe_bytes_per_image
from bench.evaluation.metrics import accuracy_summary, class_groups, unpack_correct
from bench.evaluation.settings import ATTACK_KEYS, SUITES
from bench.models.inference import InferenceModel
from methods.base import Method

C = 4
TRAIN_COUNTS = [60, 30, 15, 8]
TEST_PER_CLASS = 40
EPS = 0.05
#: the training eps and step of the runs these records belong to
RUN_RADIUS = (EPS, EPS / 4)
QUIET = Progress(enabled=False)
#: the paper suite's record and per-sample predictions
Paper = tuple[dict[str, Any], dict[str, Tensor]]


def toy_images(counts: list[int], gen: torch.Generator, templates: Tensor) -> tuple[Tensor, Tensor]:
    """uint8 8x8 images: a +-1 class template at amplitude 0.2 around grey plus Gaussian noise."""
    y = torch.arange(C).repeat_interleave(torch.tensor(counts))
    x = 0.5 + 0.2 * templates[y] + 0.4 * torch.randn(y.numel(), 1, 8, 8, generator=gen)
    return (x.clamp(0, 1) * 255).round().to(torch.uint8), y


def toy_data(test_per_class: int) -> LongTailData:
    """The long-tailed toy set: ``TRAIN_COUNTS`` training images and ``test_per_class`` test images per class."""
    gen = torch.Generator().manual_seed(0)
    templates = torch.randn(C, 1, 8, 8, generator=gen).sign()
    x_train, y_train = toy_images(TRAIN_COUNTS, gen, templates)
    x_test, y_test = toy_images([test_per_class] * C, gen, templates)
    return LongTailData("toy", ("a", "b", "c", "d"), 7.5, x_train, y_train, x_test, y_test)


@pytest.fixture(scope="module")
def data() -> LongTailData:
    return toy_data(TEST_PER_CLASS)


@pytest.fixture(scope="module")
def net(data: LongTailData) -> nn.Module:
    """A small MLP trained briefly on the long-tailed toy set: accurate, partly robust at EPS."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, C))
    opt = torch.optim.Adam(model.parameters(), 1e-2)
    for _ in range(100):
        loss = F.cross_entropy(model(to_float(data.x_train)), data.y_train)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


def plain(net: nn.Module) -> InferenceModel:
    return InferenceModel(net, Method({}, TRAIN_COUNTS))


class Shifted(Method):
    """A logit adjustment at inference: a large bonus for the last (tail) class."""

    def predict(self, logits: Tensor) -> Tensor:
        return logits + torch.tensor([0.0, 0.0, 0.0, 6.0])


def saver(path: Path) -> Any:
    """``evaluate``'s ``save``: write the record to ``path`` (as the runner does)."""
    return functools.partial(store.write_json, path)


def run_eval(model: nn.Module, data: LongTailData, attacks: tuple[str, ...], *, eps: float = EPS,
             record: dict[str, Any] | None = None, out_path: Path | None = None, n: int | None = None,
             batch_size: int = 200) -> dict[str, Any]:
    return ev.evaluate(model, data, attacks=attacks, eps=eps, step_size=eps / 4, seed=0, n=n,
                       batch_size=batch_size, record={} if record is None else record,
                       save=None if out_path is None else saver(out_path),
                       progress=QUIET, run_radius=RUN_RADIUS, settings={"attacks": list(attacks), "n": n})


@pytest.fixture(scope="module")
def paper(net: nn.Module, data: LongTailData) -> Paper:
    """The paper suite's record and every attack's per-sample predictions (captured from the run)."""
    preds: dict[str, Tensor] = {}
    original = ev.attack_predictions

    def capture(model: InferenceModel, key: str, *args: Any) -> Tensor:
        preds[key] = original(model, key, *args)
        return preds[key]

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(ev, "attack_predictions", capture)
        record = run_eval(plain(net), data, SUITES["paper"])
    return record, preds


# --- attack sanity ----------------------------------------------------------------------------------

@pytest.mark.slow
def test_eps_zero_gives_clean_accuracy_for_every_attack(net: nn.Module, data: LongTailData) -> None:
    record = run_eval(plain(net), data, SUITES["full"], eps=0.0)
    clean = record["attacks"]["clean"]["per_class_correct"]
    assert 0 < sum(clean) < C * TEST_PER_CLASS
    for key in ATTACK_KEYS:
        assert record["attacks"][key]["per_class_correct"] == clean, key


@pytest.mark.slow
def test_paper_suite_is_ordered_and_not_trivial(paper: Paper) -> None:
    acc = {key: res["acc"] for key, res in paper[0]["attacks"].items()}
    assert list(acc) == ["clean", "pgd20", "pgd100", "cw100", "aa"]
    assert 0.2 < acc["aa"] < acc["pgd20"] < acc["clean"] < 1
    assert acc["pgd100"] <= acc["pgd20"] + 0.01
    assert acc["aa"] <= acc["pgd20"] + 0.01
    assert acc["aa"] <= min(acc["pgd100"], acc["cw100"]) + 0.01


@pytest.mark.slow
def test_autoattack_robust_only_where_clean_correct(
    paper: Paper, data: LongTailData
) -> None:
    preds = paper[1]
    clean_ok, aa_ok = preds["clean"] == data.y_test, preds["aa"] == data.y_test
    assert (aa_ok <= clean_ok).all()
    assert aa_ok.sum() < clean_ok.sum()


def test_autoattack_targets_fit_the_class_count(data: LongTailData) -> None:
    assert ev.attack_params("aa", EPS, EPS / 4, 4, 0)["n_target_classes"] == 3
    assert ev.attack_params("aa", EPS, EPS / 4, 100, 0)["n_target_classes"] == 9
    with pytest.raises(InputError, match="at least 4 classes"):
        ev.check_attacks(("clean", "aa"), 3)
    ev.check_attacks(SUITES["fast"], 3)


@pytest.mark.slow
def test_autoattack_params_record_the_standard_version(paper: Paper) -> None:
    params = paper[0]["attacks"]["aa"]["params"]
    assert params["version"] == "standard" and params["norm"] == "Linf" and params["eps"] == EPS
    assert params["attacks"] == ["apgd-ce", "apgd-t", "fab-t", "square"]
    assert params["package"].startswith("pyautoattack ")
    assert (params["chunk"], params["chunk_rule"]) == (200, "evaluation batch size")
    assert isinstance(paper[0]["attacks"]["aa"]["checks"], list)


def test_suite_parameters_follow_the_protocol() -> None:
    assert SUITES["fast"] == ("clean", "pgd20")
    assert SUITES["full"] == ATTACK_KEYS
    pgd = ev.attack_params("pgd100", 8 / 255, 2 / 255, 10, 3)
    assert (pgd["steps"], pgd["loss"], pgd["start"], pgd["step_size"]) == (100, "ce", "uniform", 2 / 255)
    cw = ev.attack_params("cw100", 8 / 255, 2 / 255, 10, 3)
    assert (cw["steps"], cw["loss"], cw["kappa"]) == (100, "cw", 50.0)
    fgsm = ev.attack_params("fgsm", 8 / 255, 2 / 255, 10, 3)
    assert (fgsm["steps"], fgsm["step_size"], fgsm["start"]) == (1, 8 / 255, "none")


# --- the inference path ---------------------------------------------------------------------------

def test_logit_adjustment_is_attacked_through(net: nn.Module, data: LongTailData) -> None:
    adjusted = InferenceModel(net, Shifted({}, TRAIN_COUNTS))
    record = run_eval(adjusted, data, ("clean", "pgd20"))["attacks"]
    x, y = to_float(data.x_test), data.y_test
    with torch.no_grad():
        assert record["clean"]["acc"] == pytest.approx((adjusted(x).argmax(1) == y).float().mean().item())
        assert record["clean"]["acc"] != pytest.approx((net(x).argmax(1) == y).float().mean().item())
    assert record["pgd20"]["acc"] < record["clean"]["acc"] - 0.1

    params = ev.attack_params("pgd20", EPS, EPS / 4, C, 0)
    through = ev.attack_predictions(adjusted, "pgd20", params, x, y, torch.Generator().manual_seed(1))
    x_net = pgd(net, x, y, eps=EPS, step_size=EPS / 4, steps=20, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        around = adjusted(x_net).argmax(1)
    acc_through, acc_around = (through == y).float().mean().item(), (around == y).float().mean().item()
    assert abs(acc_through - record["pgd20"]["acc"]) <= 0.02
    assert acc_through < acc_around - 0.05


# --- metrics ---------------------------------------------------------------------------------------

@pytest.mark.slow
def test_per_class_numbers_sum_to_the_overall(paper: Paper) -> None:
    groups = class_groups(TRAIN_COUNTS)
    assert groups == {"head": [0], "mid": [1, 2], "tail": [3]}
    for key, res in paper[0]["attacks"].items():
        correct, total = res["per_class_correct"], res["per_class_total"]
        assert total == [TEST_PER_CLASS] * C, key
        assert res["acc"] == pytest.approx(sum(correct) / sum(total))
        assert res["per_class_acc"] == pytest.approx([c / t for c, t in zip(correct, total, strict=True)])
        for name, classes in groups.items():
            assert res[name] == pytest.approx(sum(res["per_class_acc"][c] for c in classes) / len(classes))
        assert res["worst"] == min(res["per_class_acc"])
        assert res["balanced"] == pytest.approx(sum(res["per_class_acc"]) / C)
        confusion = torch.tensor(res["confusion"])
        assert confusion.sum(1).tolist() == total and confusion.diagonal().tolist() == correct


def test_class_groups_are_thirds_by_training_count() -> None:
    ten = class_groups(list(range(100, 0, -10)))
    assert ten == {"head": [0, 1, 2], "mid": [3, 4, 5, 6], "tail": [7, 8, 9]}
    hundred = class_groups(list(range(200, 100, -1)))
    assert (hundred["head"], hundred["tail"]) == (list(range(33)), list(range(67, 100)))
    assert class_groups([5, 50, 20, 10, 40, 30]) == {"head": [1, 4], "mid": [5, 2], "tail": [3, 0]}


def test_balanced_differs_from_overall_on_an_unbalanced_subset() -> None:
    labels = torch.tensor([0, 0, 0, 1])
    summary = accuracy_summary(torch.tensor([0, 0, 0, 0]), labels, [3, 1, 1])
    assert summary["acc"] == 0.75 and summary["balanced"] == 0.5 and summary["worst"] == 0.0
    assert math.isnan(summary["per_class_acc"][2]) and math.isnan(summary["tail"])


# --- saving, resume and progress -------------------------------------------------------------------

@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Count attack batches; clean/pgd20 stay real."""
    seen: list[str] = []
    original = ev.attack_predictions

    def counting(model: InferenceModel, key: str, *args: Any) -> Tensor:
        seen.append(key)
        return original(model, key, *args)

    monkeypatch.setattr(ev, "attack_predictions", counting)
    return seen


def test_resume_skips_attacks_done_with_the_same_settings(
    net: nn.Module, data: LongTailData, calls: list[str], tmp_path: Path
) -> None:
    out = tmp_path / "eval.json"
    record = run_eval(plain(net), data, ("clean", "pgd20"), out_path=out)
    assert calls == ["clean", "pgd20"]
    saved = json.loads(out.read_text())
    assert saved["attacks"]["pgd20"]["acc"] == record["attacks"]["pgd20"]["acc"]
    assert saved["n_test"] == C * TEST_PER_CLASS and saved["subset"] == "all"
    assert (saved["eps"], saved["step_size"], saved["precision"]) == (EPS, EPS / 4, "fp32")
    assert "protocols" not in saved, "results at the run's own protocol keep eval.json's earlier shape"

    run_eval(plain(net), data, ("clean", "pgd20"), record=saved, out_path=out)
    assert calls == ["clean", "pgd20"]

    smaller_suite = run_eval(plain(net), data, ("clean",), record=saved, out_path=out)
    assert calls == ["clean", "pgd20"]
    assert list(smaller_suite["attacks"]) == ["clean"]
    assert list(saved["attacks"]) == ["clean", "pgd20"], "a smaller suite keeps the other results"


@pytest.fixture
def fake_aa(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """AutoAttack replaced by a fake that misclassifies every image (fast); counts the images it saw."""
    seen: list[int] = []

    def every_image_wrong(model: InferenceModel, x: Tensor, y: Tensor, params: dict) -> Tensor:
        seen.append(y.numel())
        return (y + 1) % C

    monkeypatch.setattr(ev, "autoattack_predictions", every_image_wrong)
    return seen


def test_another_radius_adds_results_and_keeps_every_stored_one(
    net: nn.Module, data: LongTailData, calls: list[str], fake_aa: list[int], tmp_path: Path
) -> None:
    out = tmp_path / "eval.json"
    run_eval(plain(net), data, ("clean", "pgd20", "aa"), out_path=out)
    before = json.loads(out.read_text())
    assert before["attacks"]["aa"]["acc"] == 0.0 and sum(fake_aa) == C * TEST_PER_CLASS

    asked = run_eval(plain(net), data, ("clean", "pgd20"), eps=EPS / 2, record=json.loads(out.read_text()),
                     out_path=out)
    assert calls[-1:] == ["pgd20"], "clean has no radius: its stored result serves every eps"
    after = json.loads(out.read_text())
    assert after["attacks"] == before["attacks"], "the results at the run's own eps, AutoAttack included, stay"
    assert after["evaluation"] == before["evaluation"] == {"attacks": ["clean", "pgd20", "aa"], "n": None}
    assert after["eps"] == EPS
    (other,) = after["protocols"]
    assert {k: other[k] for k in ("eps", "step_size", "precision", "test_profile", "n_test", "subset")} == {
        "eps": EPS / 2, "step_size": EPS / 8, "precision": "fp32", "test_profile": "balanced",
        "n_test": C * TEST_PER_CLASS, "subset": "all"}
    assert list(other["attacks"]) == ["pgd20"] and other["attacks"]["pgd20"]["params"]["eps"] == EPS / 2
    assert asked["eps"] == EPS / 2 and list(asked["attacks"]) == ["clean", "pgd20"]
    assert asked["attacks"]["pgd20"] == other["attacks"]["pgd20"]
    assert asked["attacks"]["clean"] == before["attacks"]["clean"]
    assert other["attacks"]["pgd20"]["acc"] >= before["attacks"]["pgd20"]["acc"], "a smaller ball is weaker"

    runs = len(calls)
    run_eval(plain(net), data, ("pgd20",), eps=EPS / 2, record=after, out_path=out)
    assert len(calls) == runs, "the same protocol again reuses its result"


def test_force_replaces_only_the_asked_attacks_of_the_asked_protocol(
    net: nn.Module, data: LongTailData, calls: list[str], fake_aa: list[int], tmp_path: Path
) -> None:
    out = tmp_path / "eval.json"
    run_eval(plain(net), data, ("clean", "pgd20", "aa"), out_path=out)
    run_eval(plain(net), data, ("pgd20",), eps=EPS / 2, record=json.loads(out.read_text()), out_path=out)
    before = json.loads(out.read_text())
    images = len(fake_aa)

    ev.evaluate(plain(net), data, attacks=("pgd20",), eps=EPS / 2, step_size=EPS / 8, seed=0, n=None,
                batch_size=200, record=json.loads(out.read_text()), save=saver(out), progress=QUIET,
                run_radius=RUN_RADIUS, force=True)
    forced = json.loads(out.read_text())
    assert calls[-1] == "pgd20" and len(fake_aa) == images
    assert forced["attacks"] == before["attacks"]
    replaced = forced["protocols"][0]["attacks"]["pgd20"]
    assert replaced["seconds"] != before["protocols"][0]["attacks"]["pgd20"]["seconds"]
    assert replaced["per_class_correct"] == before["protocols"][0]["attacks"]["pgd20"]["per_class_correct"]

    ev.evaluate(plain(net), data, attacks=("aa",), eps=EPS, step_size=EPS / 4, seed=0, n=None, batch_size=200,
                record=forced, save=saver(out), progress=QUIET, run_radius=RUN_RADIUS, force=True)
    again = json.loads(out.read_text())
    assert len(fake_aa) > images, "--force at the run's own eps runs AutoAttack again"
    assert {k: again["attacks"][k] for k in ("clean", "pgd20")} == {k: before["attacks"][k] for k in ("clean", "pgd20")}
    assert again["protocols"] == forced["protocols"]


def test_fewer_test_images_keep_the_results_on_all_of_them(
    net: nn.Module, data: LongTailData, calls: list[str], fake_aa: list[int], tmp_path: Path
) -> None:
    out = tmp_path / "eval.json"
    settings = {"suite": "fast", "n": None}
    ev.evaluate(plain(net), data, attacks=("clean", "pgd20"), eps=EPS, step_size=EPS / 4, seed=0, n=None,
                batch_size=200, record={}, save=saver(out), progress=QUIET, run_radius=RUN_RADIUS, settings=settings)
    before = json.loads(out.read_text())
    asked = ev.evaluate(plain(net), data, attacks=("aa",), eps=EPS, step_size=EPS / 4, seed=0, n=8, batch_size=200,
                        record=json.loads(out.read_text()), save=saver(out), progress=QUIET, run_radius=RUN_RADIUS,
                        settings={"suite": "custom", "n": 8})
    after = json.loads(out.read_text())
    assert fake_aa == [8] and asked["n_test"] == 8 and asked["subset"] == "stratified-first-n"
    assert after["attacks"] == before["attacks"] and after["n_test"] == C * TEST_PER_CLASS
    assert after["evaluation"] == settings, "the settings recorded are those of the run's own protocol"
    (fewer,) = after["protocols"]
    assert (fewer["eps"], fewer["n_test"], list(fewer["attacks"])) == (EPS, 8, ["aa"])
    assert fewer["attacks"]["aa"]["per_class_total"] == [2] * C

    ev.evaluate(plain(net), data, attacks=("clean",), eps=EPS, step_size=EPS / 4, seed=0, n=8, batch_size=200,
                record=after, save=saver(out), progress=QUIET, run_radius=RUN_RADIUS)
    assert list(json.loads(out.read_text())["protocols"][0]["attacks"]) == ["clean", "aa"]


def test_an_old_record_at_another_radius_keeps_its_results_and_gets_its_own(
    net: nn.Module, data: LongTailData, calls: list[str], tmp_path: Path
) -> None:
    """A file written before protocols existed, by an evaluation at another eps, holds them at the top."""
    out = tmp_path / "eval.json"
    record: dict[str, Any] = {}
    old = ev.evaluate(plain(net), data, attacks=("clean", "pgd20"), eps=EPS / 2, step_size=EPS / 8, seed=0, n=None,
                      batch_size=200, record=record, save=None, progress=QUIET, run_radius=(EPS / 2, EPS / 8))
    old_file = {k: v for k, v in record.items() if k not in ("eps", "step_size", "precision")}
    assert old_file["attacks"] == old["attacks"] and "protocols" not in old_file
    calls.clear()
    run_eval(plain(net), data, ("clean", "pgd20"), record=old_file, out_path=out)
    assert calls == ["pgd20"], "clean is the same at every radius"
    record = json.loads(out.read_text())
    assert record["attacks"]["clean"] == old["attacks"]["clean"] and record["eps"] == EPS
    assert record["attacks"]["pgd20"]["params"]["eps"] == EPS
    assert record["protocols"][0]["eps"] == EPS / 2
    assert record["protocols"][0]["attacks"] == {"pgd20": old["attacks"]["pgd20"]}


@pytest.mark.slow
def test_per_image_results_match_the_summary_and_old_records_get_them(
    net: nn.Module, data: LongTailData, calls: list[str], paper: Paper
) -> None:
    record, preds = paper
    y = data.y_test
    for key, res in record["attacks"].items():
        bits = unpack_correct(res["correct_bits"], y.numel())
        by_class = (preds[key] == y)[torch.argsort(y, stable=True)]
        assert bits.tolist() == by_class.tolist(), key
        assert bits.sum() == sum(res["per_class_correct"]), key
    old = json.loads(json.dumps(record))
    for key in ("clean", "pgd20"):
        del old["attacks"][key]["correct_bits"]
    rerun = run_eval(plain(net), data, ("clean",), record=old)
    assert calls == ["clean"], "only the requested attack without per-image results runs again"
    assert "correct_bits" in rerun["attacks"]["clean"] and "correct_bits" not in old["attacks"]["pgd20"]


def test_each_attack_is_saved_when_it_finishes(
    net: nn.Module, data: LongTailData, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    out = tmp_path / "eval.json"
    original = ev.attack_predictions

    def crash_in_pgd(model: InferenceModel, key: str, *args: Any) -> Tensor:
        if key == "pgd20":
            raise KeyboardInterrupt
        return original(model, key, *args)

    monkeypatch.setattr(ev, "attack_predictions", crash_in_pgd)
    with pytest.raises(KeyboardInterrupt):
        run_eval(plain(net), data, ("clean", "pgd20"), out_path=out)
    assert list(json.loads(out.read_text())["attacks"]) == ["clean"]


class RecordingProgress(Progress):
    def __init__(self) -> None:
        super().__init__(enabled=False)
        self.advances: list[tuple[str, int]] = []

    def task(self, description: str, total: int, completed: int = 0, transient: bool = False) -> Any:
        outer, inner = self, super().task(description, total, completed, transient)

        class Recorded:
            def advance(self, steps: int = 1) -> None:
                outer.advances.append((description, steps))
                inner.advance(steps)

            def close(self) -> None:
                inner.close()

        return Recorded()


def test_autoattack_runs_in_chunks_that_advance_the_bar(
    net: nn.Module, data: LongTailData, monkeypatch: pytest.MonkeyPatch
) -> None:
    sizes: list[int] = []

    def fake_aa(model: InferenceModel, key: str, params: dict, x: Tensor, y: Tensor, gen: Any, graphs: Any) -> Tensor:
        sizes.append(y.numel())
        return y

    monkeypatch.setattr(ev, "attack_predictions", fake_aa)
    progress = RecordingProgress()
    record = ev.evaluate(plain(net), data, attacks=("aa",), eps=EPS, step_size=EPS / 4, seed=0, n=None,
                         batch_size=64, record={}, save=None, progress=progress, run_radius=RUN_RADIUS)
    assert sizes == [64, 64, 32]
    assert progress.advances == [("eval aa", 64), ("eval aa", 64), ("eval aa", 32)]
    aa = record["attacks"]["aa"]
    assert (aa["params"]["chunk"], aa["params"]["chunk_rule"]) == (64, "evaluation batch size"), "on the CPU"
    assert aa["batch_size"] == 64


def test_a_stored_autoattack_result_in_other_chunks_is_reused(
    net: nn.Module, data: LongTailData, fake_aa: list[int], tmp_path: Path
) -> None:
    out = tmp_path / "eval.json"
    run_eval(plain(net), data, ("aa",), out_path=out)
    assert fake_aa == [C * TEST_PER_CLASS]
    stored = json.loads(out.read_text())
    params = stored["attacks"]["aa"]["params"]
    params.update(chunk=10_000, chunk_rule="memory probe: 0.05 MiB/image, 130.2 GiB free")
    run_eval(plain(net), data, ("aa",), record=stored)
    for key in ("chunk", "chunk_rule"):  # a record from before chunks: computed in chunks of its batch_size
        del params[key]
    run_eval(plain(net), data, ("aa",), record=stored)
    assert fake_aa == [C * TEST_PER_CLASS], "the chunk is not a parameter of the attack"

    params.update(chunk=10_000, chunk_rule="evaluation batch size", package="pyautoattack 0.1.0")
    rerun = run_eval(plain(net), data, ("aa",), record=stored)
    assert len(fake_aa) == 2, "another pyautoattack is another attack"
    assert rerun["attacks"]["aa"]["params"]["chunk"] == 200


@pytest.mark.slow
@pytest.mark.skipif(not torch.cuda.is_available(), reason="the memory probe needs CUDA")
def test_on_cuda_autoattack_takes_every_image_in_one_call(
    net: nn.Module, monkeypatch: pytest.MonkeyPatch
) -> None:
    """1,000 test images of a small net: one pyautoattack call, its peak memory within the probe's estimate."""
    device = torch.device("cuda")
    big = toy_data(250)
    tensors = ("x_train", "y_train", "x_test", "y_test")
    big = dataclasses.replace(big, **{k: getattr(big, k).to(device) for k in tensors})
    model = plain(copy.deepcopy(net).to(device))
    model_bytes = probe_bytes_per_image(model, to_float(big.x_test[:AA_PROBE_IMAGES]))
    assert model_bytes > 0
    sizes: list[int] = []
    original = ev.autoattack_predictions

    def counting(model: InferenceModel, x: Tensor, y: Tensor, params: dict) -> Tensor:
        sizes.append(y.numel())
        return original(model, x, y, params)

    monkeypatch.setattr(ev, "autoattack_predictions", counting)
    before = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    record = run_eval(model, big, ("aa",), batch_size=500)
    peak = torch.cuda.max_memory_allocated(device) - before
    aa = record["attacks"]["aa"]
    assert sizes == [1000] and aa["params"]["chunk"] == 1000 and aa["batch_size"] == 500
    assert aa["params"]["chunk_rule"].startswith("memory probe: ")
    assert 0 < aa["acc"] < 1
    assert peak <= 1000 * aa_bytes_per_image(model_bytes, 8 * 8 * 4)


def test_autoattack_checks_are_recorded_with_its_result(
    net: nn.Module, data: LongTailData, monkeypatch: pytest.MonkeyPatch
) -> None:
    logger = logging.getLogger("auto-attack")
    handlers = list(logger.handlers)
    warning = "Square Attack has decreased the robust accuracy of 0.40%."

    def fake_aa(model: InferenceModel, x: Tensor, y: Tensor, params: dict) -> Tensor:
        logger.debug("robust accuracy after apgd-ce: 50.00%")  # progress messages are not checks
        logger.warning(warning)
        return y

    monkeypatch.setattr(ev, "autoattack_predictions", fake_aa)
    record = ev.evaluate(plain(net), data, attacks=("clean", "aa"), eps=EPS, step_size=EPS / 4, seed=0, n=None,
                         batch_size=100, record={}, save=None, progress=QUIET, run_radius=RUN_RADIUS)
    assert record["attacks"]["aa"]["checks"] == [warning, warning]  # one per chunk of 100 of the 160 images
    assert "checks" not in record["attacks"]["clean"]
    assert logger.handlers == handlers


# --- the command line ------------------------------------------------------------------------------

@pytest.mark.slow
def test_bench_eval_writes_the_record_and_prints_the_table(
    cifar_root: Path, tiny_args: list[str], tmp_path: Path
) -> None:
    runner = CliRunner()
    common = ["--data-root", str(cifar_root), "--no-progress", "--device", "cpu"]
    trained = runner.invoke(main, ["run", "--methods", "pgd-at", *tiny_args, "--device", "cpu", "--out", str(tmp_path)])
    assert trained.exit_code == 0, trained.output
    (run_dir,) = [p for p in tmp_path.iterdir() if p.is_dir()]

    args = ["eval", str(run_dir), "--suite", "fast", "--n", "30", "--eps", "0", *common]
    result = runner.invoke(main, args)
    assert result.exit_code == 0, result.output
    record = json.loads((run_dir / "eval.json").read_text())
    assert record["n_test"] == 20 and list(record["attacks"]) == ["clean", "pgd20"], "the run's own results stay"
    assert record["checkpoint"] == "last" and set(record["versions"]) >= {"torch", "pyautoattack", "ltbench"}
    blocks = {b["eps"]: b for b in record["protocols"]}
    assert set(blocks) == {0.0, record["eps"]}, "clean is kept at the run's eps, PGD-20 at eps 0"
    assert all(b["n_test"] == 30 and b["subset"] == "stratified-first-n" for b in blocks.values())
    pgd = blocks[0.0]["attacks"]["pgd20"]
    assert pgd["params"]["eps"] == 0.0 and pgd["params"]["step_size"] == 0.0 and pgd["seconds"] >= 0
    assert pgd["per_class_correct"] == blocks[record["eps"]]["attacks"]["clean"]["per_class_correct"]
    assert "balanced" in result.output and "class9" in result.output and "eps 0," in result.output

    again = runner.invoke(main, args)
    assert again.exit_code == 0 and again.output.count("done earlier") == 2

    bad = runner.invoke(main, ["eval", str(run_dir), "--n", "0", *common])
    assert bad.exit_code == 2 and "positive number" in bad.output


@pytest.mark.slow
def test_bench_eval_at_several_radii_keeps_every_result(cifar_root: Path, tiny_args: list[str], tmp_path: Path) -> None:
    runner = CliRunner()
    common = ["--data-root", str(cifar_root), "--no-progress", "--device", "cpu"]
    trained = runner.invoke(main, ["run", "--methods", "pgd-at", *tiny_args, "--device", "cpu", "--out", str(tmp_path)])
    assert trained.exit_code == 0, trained.output
    (run_dir,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    own = json.loads((run_dir / "eval.json").read_text())

    result = runner.invoke(main, ["eval", str(tmp_path), "--attacks", "pgd20", "--eps", "1/40,0.05,8/255", *common])
    assert result.exit_code == 0, result.output
    record = json.loads((run_dir / "eval.json").read_text())
    assert record["attacks"] == own["attacks"] and record["evaluation"] == own["evaluation"]
    assert [(b["eps"], b["step_size"], list(b["attacks"])) for b in record["protocols"]] == [
        (0.025, 0.00625, ["pgd20"]), (0.05, 0.0125, ["pgd20"])], "8/255 is the run's own eps: stored already"
    table = result.output[result.output.index("evaluated runs"):]
    assert all(f" {eps} " in table for eps in ("0.025", "0.05", "0.0313725")) and "done earlier" in result.output

    forced = runner.invoke(main, ["eval", str(run_dir), "--attacks", "pgd20", "--eps", "0.05", "--force", *common])
    assert forced.exit_code == 0 and "replacing the stored result (--force)" in forced.output
    after = json.loads((run_dir / "eval.json").read_text())
    assert after["attacks"] == own["attacks"] and after["protocols"][0] == record["protocols"][0]
    assert after["protocols"][1]["attacks"]["pgd20"]["per_class_correct"] == \
        record["protocols"][1]["attacks"]["pgd20"]["per_class_correct"]
