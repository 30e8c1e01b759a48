"""Feature-space analysis: each metric on hand-built features with known answers, the features against the
evaluator's attack, and `bench analyze` on a tiny trained run."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import bench.analysis.metrics as am
import bench.evaluation.suite as ev
from bench.analysis.features import extract
from bench.cli import main
from bench.core.progress import Progress
from bench.data.images import to_float
from bench.models import build_model
from bench.models.inference import InferenceModel
from methods.base import Method
from methods.tail_loss import _pair_terms

M, A = 10.0, 1.0  # cluster offset and radius of the hand-built clusters
#: four points at distance A around (M, 0): centroid (M, 0), spread A, per-axis variance A^2 / 2
CROSS = np.array([[A, 0.0], [-A, 0.0], [0.0, A], [0.0, -A]])


def two_clusters() -> tuple[np.ndarray, np.ndarray]:
    features = np.concatenate([CROSS + [M, 0.0], CROSS + [-M, 0.0]])
    return features, np.repeat([0, 1], 4)


def test_two_separated_clusters_have_the_known_geometry() -> None:
    features, labels = two_clusters()
    g = am.class_geometry(features, labels, [10, 5])
    per = {k: np.array(v) for k, v in g["per_class"].items()}
    np.testing.assert_allclose(per["spread"], [A, A])
    np.testing.assert_allclose(per["nearest_centroid_dist"], [2 * M, 2 * M])
    np.testing.assert_allclose(per["separation"], [2 * M / A, 2 * M / A])
    # between = ||mu_c - m||^2 = M^2, within along x = A^2 / 2
    np.testing.assert_allclose(per["fisher"], [2 * M ** 2 / A ** 2] * 2)
    np.testing.assert_allclose(per["norm"], [(2 * M + 2 * math.hypot(M, A)) / 4] * 2)
    np.testing.assert_array_equal(per["ncm_acc"], [1.0, 1.0])
    assert g["nearest_class"] == [1, 0] and g["ncm_acc"] == 1.0


def test_identical_clusters_are_not_separable() -> None:
    features = np.concatenate([CROSS, CROSS])
    labels = np.repeat([0, 1], 4)
    g = am.class_geometry(features, labels, [10, 5])
    per = {k: np.array(v) for k, v in g["per_class"].items()}
    np.testing.assert_array_equal(per["nearest_centroid_dist"], [0.0, 0.0])
    np.testing.assert_array_equal(per["separation"], [0.0, 0.0])
    np.testing.assert_array_equal(per["fisher"], [0.0, 0.0])
    # leave-one-out: the sample's own centroid is farther than the other class's (which holds its twin)
    np.testing.assert_array_equal(per["ncm_acc"], [0.0, 0.0])
    # other class = the same points: the mean over n^2 pairs includes n zero pairs
    np.testing.assert_allclose(per["kl_other"], per["kl_same"] * 3 / 4)


def test_a_collapsed_class_has_zero_spread_and_infinite_separation() -> None:
    features, labels = two_clusters()
    features = np.concatenate([features, np.tile([[0.0, 5.0]], (3, 1))])
    labels = np.concatenate([labels, [2, 2, 2]])
    g = am.class_geometry(features, labels, [10, 5, 2])
    assert g["per_class"]["spread"][2] == 0.0
    assert g["per_class"]["separation"][2] == math.inf
    assert g["per_class"]["kl_same"][2] == pytest.approx(0.0, abs=1e-12)
    assert g["per_class"]["norm"][2] == pytest.approx(5.0)
    assert g["per_class"]["nearest_centroid_dist"][2] == pytest.approx(math.hypot(M, 5.0))


def test_fisher_is_the_ratio_along_the_class_direction() -> None:
    """Stretching a class along its own direction lowers F; stretching it across leaves F unchanged."""
    features, labels = two_clusters()
    along, across = features.copy(), features.copy()
    along[:, 0] += np.tile([A, -A, 0, 0], 2)  # x offsets +-2A: variance along x 4 times larger
    across[:, 1] *= 3
    base = am.class_geometry(features, labels, [10, 5])["per_class"]["fisher"][0]
    assert am.class_geometry(along, labels, [10, 5])["per_class"]["fisher"][0] == pytest.approx(base / 4)
    assert am.class_geometry(across, labels, [10, 5])["per_class"]["fisher"][0] == pytest.approx(base)


def test_feature_kl_by_hand() -> None:
    """softmax(0, 0) = (1/2, 1/2) and softmax(log 3, 0) = (3/4, 1/4); class 3 is REAT's tail for C = 4."""
    features = np.array([[0.0, 0.0], [0.0, 0.0], [math.log(3), 0.0]])
    labels = np.array([0, 1, 3])
    g = am.class_geometry(features, labels, [10, 5, 3, 2])
    kl_pq = 0.5 * math.log(0.5 / 0.75) + 0.5 * math.log(0.5 / 0.25)
    kl_qp = 0.75 * math.log(0.75 / 0.5) + 0.25 * math.log(0.25 / 0.5)
    assert g["per_class"]["kl_other"][0] == pytest.approx(kl_pq / 2)  # to class 1 (0) and class 2
    assert g["per_class"]["kl_other"][3] == pytest.approx(kl_qp)
    assert g["tail_kl"] == pytest.approx(kl_qp)
    assert math.isnan(g["per_class"]["kl_same"][3])  # one sample: no same-class pair


def test_feature_kl_matches_the_tail_loss_pair_matrix() -> None:
    """kl_other is the mean of TAIL's per-pair K[b, j] = KL(P_b || Q_j) over b in c, j in other classes."""
    gen = torch.Generator().manual_seed(0)
    features = torch.randn(30, 6, generator=gen, dtype=torch.float64)
    labels = torch.arange(30) % 3
    kl, _, same, _ = _pair_terms(features, labels, torch.tensor([20.0, 10.0, 5.0], dtype=torch.float64))
    other, _ = am.feature_kl(features.numpy(), labels.numpy(), 3)
    for c in range(3):
        rows = labels == c
        assert other[c] == pytest.approx(kl[rows][:, ~same[rows][0]].mean().item())


def test_random_features_give_chance_level_ncm() -> None:
    """Leave-one-out centroids: no in-sample bonus for noise features (in-sample gives about 0.4 here)."""
    rng = np.random.default_rng(0)
    g = am.class_geometry(rng.normal(size=(1000, 128)), np.repeat(np.arange(10), 100), [100] * 10)
    assert g["ncm_acc"] == pytest.approx(0.1, abs=0.03)


def test_group_means_follow_the_evaluator_and_skip_missing_classes() -> None:
    values = np.array([1.0, 2.0, 3.0, np.nan, 5.0, 6.0])
    assert am.group_means(values, [60, 50, 40, 30, 20, 10]) == {"head": 1.5, "mid": 3.0, "tail": 5.5}
    assert am.reat_tail_classes(10) == [7, 8, 9] and am.reat_tail_classes(100) == list(range(67, 100))


def test_a_class_without_samples_is_nan() -> None:
    features, labels = two_clusters()
    g = am.class_geometry(features, labels, [10, 5, 2])
    assert all(math.isnan(g["per_class"][k][2]) for k in am.PER_CLASS_METRICS)
    assert g["nearest_class"][2] == -1 and g["per_class"]["separation"][0] == pytest.approx(2 * M / A)


# --- the features are the evaluator's --------------------------------------------------------------

def test_features_come_from_the_evaluators_adversarial_images() -> None:
    torch.manual_seed(0)
    method = Method({}, [8, 4, 2])
    net = build_model("cnn-small", 1, method.build_head)
    model = InferenceModel(net, method).eval()
    gen = torch.Generator().manual_seed(1)
    x = torch.randint(0, 256, (12, 1, 8, 8), generator=gen, dtype=torch.uint8)
    y = torch.arange(12) % 3
    params = ev.attack_params("pgd20", 0.1, 0.025, 3, seed=0)
    quiet = Progress(enabled=False)
    got = extract(model, "pgd20", params, x, y, seed=0, batch_size=5, progress=quiet)
    preds = ev.run_attack(model, "pgd20", params, x, y, seed=0, batch_size=5, progress=quiet)
    np.testing.assert_array_equal(got.predictions, preds.numpy())
    generator = ev.attack_generator("pgd20", 0, y.device)
    x_adv = torch.cat([ev.adversarial_images(model, "pgd20", params, to_float(x[s:s + 5]), y[s:s + 5], generator)
                       for s in range(0, 12, 5)])
    with torch.no_grad():
        expected = net.forward_features(x_adv).features
    np.testing.assert_allclose(got.features, expected.numpy(), rtol=1e-6, atol=1e-6)
    clean = extract(model, "clean", {}, x, y, seed=0, batch_size=5, progress=quiet)
    assert not np.allclose(clean.features, got.features)


# --- the command line -------------------------------------------------------------------------------

@pytest.mark.slow
def test_bench_analyze_writes_resumes_and_checks_against_eval(
    cifar_root: Path, tiny_args: list[str], tmp_path: Path
) -> None:
    runner = CliRunner()
    trained = runner.invoke(main, ["run", "--methods", "tail", *tiny_args, "--device", "cpu", "--out", str(tmp_path)])
    assert trained.exit_code == 0, trained.output
    (run_dir,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    common = ["--data-root", str(cifar_root), "--no-progress", "--device", "cpu"]

    result = runner.invoke(main, ["analyze", str(tmp_path), "--n", "20", *common])
    assert result.exit_code == 0, result.output
    record = json.loads((run_dir / "analysis.json").read_text())
    assert record["params"]["n_test"] == 20 and record["params"]["attack"] == "pgd20"
    assert record["per_class_total"] == [2] * 10 and record["reat_tail_classes"] == [7, 8, 9]
    for key in ("clean", "pgd20"):
        cond = record["conditions"][key]
        assert cond["eval_check"].startswith("same per-class correct counts"), cond["eval_check"]
        assert set(cond["per_class"]) == set(am.PER_CLASS_METRICS) and len(cond["per_class"]["fisher"]) == 10
    with np.load(run_dir / "analysis-tsne.npz") as maps:
        assert maps["clean"].shape == (20, 2) and maps["pgd20"].dtype == np.float32
    assert not (run_dir / "analysis-features.npz").exists()

    again = runner.invoke(main, ["analyze", str(run_dir), "--n", "20", *common])
    assert again.exit_code == 0 and "done earlier" in again.output

    saved = runner.invoke(main, ["analyze", str(run_dir), "--n", "20", "--save-features", *common])
    assert saved.exit_code == 0 and "done earlier" not in saved.output
    with np.load(run_dir / "analysis-features.npz") as npz:
        assert npz["clean_features"].shape == (20, 128) and np.bincount(npz["labels"]).tolist() == [2] * 10

    shutil.rmtree(run_dir / "ckpt")  # committed results keep no checkpoints: their analysis is reused
    kept = runner.invoke(main, ["analyze", str(tmp_path), "--n", "20", *common])
    assert kept.exit_code == 0 and "done earlier" in kept.output
    other = runner.invoke(main, ["analyze", str(run_dir), "--n", "30", *common])
    assert other.exit_code == 1 and "has no last checkpoint to analyse" in other.output

    (run_dir / "done").unlink()
    unfinished = runner.invoke(main, ["analyze", str(run_dir), *common])
    assert unfinished.exit_code != 0 and "not finished" in unfinished.output
    bad = runner.invoke(main, ["analyze", str(run_dir), "--attack", "aa", *common])
    assert bad.exit_code == 2


def test_cli_offers_exactly_the_analysable_attacks() -> None:
    from bench.analysis import ANALYSIS_ATTACKS
    from bench.cli.analyze_cmd import command

    (attack,) = [p for p in command.params if p.name == "attack"]
    assert tuple(attack.type.choices) == ANALYSIS_ATTACKS
