"""The paired bootstrap of the comparison tables, on constructed per-image results whose answer is known."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from bench.evaluation.metrics import pack_correct, unpack_correct
from bench.report.significance import Bootstrap, Runs, compare_to_best, point_estimate
from bench.report.tables import build_tables, differences_markdown, to_csv, to_latex, to_markdown

NUM_CLASSES, PER_CLASS = 10, 100
LABELS = np.repeat(np.arange(NUM_CLASSES), PER_CLASS)
TAIL = [7, 8, 9]


def runs(*rows: np.ndarray, seeds: tuple[int, ...] | None = None) -> Runs:
    return Runs(seeds or tuple(range(len(rows))), np.stack(rows))


def correct_where(wrong: np.ndarray) -> np.ndarray:
    """All 1,000 images correct except those indexed by ``wrong``."""
    row = np.ones(LABELS.size, dtype=bool)
    row[wrong] = False
    return row


def test_pack_and_unpack_round_trip_grouped_by_class() -> None:
    labels = torch.tensor([2, 0, 1, 0, 2, 1, 1, 0, 2, 2, 0])
    correct = torch.tensor([1, 0, 1, 1, 0, 0, 1, 1, 1, 0, 1], dtype=torch.bool)
    bits = unpack_correct(pack_correct(correct, labels), labels.numel())
    # class 0 (images 1, 3, 7, 10), class 1 (2, 5, 6), class 2 (0, 4, 8, 9), each in image order
    assert bits.tolist() == [False, True, True, True, True, False, True, True, False, True, False]
    with pytest.raises(ValueError, match="expected 20"):
        unpack_correct(pack_correct(correct, labels), 20)


def test_identical_methods_differ_by_exactly_zero() -> None:
    row = correct_where(np.arange(0, 1000, 3))
    methods = {"a": runs(row, row), "b": runs(row, row)}
    for classes in (None, TAIL):
        d = compare_to_best(Bootstrap(LABELS, NUM_CLASSES, samples=500), methods, classes, "a")["b"]
        assert (d.mean, d.low, d.high) == (0.0, 0.0, 0.0)
        assert not d.significantly_worse


def test_large_gap_is_significant_and_its_interval_covers_the_truth() -> None:
    best, half = correct_where(np.array([], dtype=int)), correct_where(np.arange(0, 1000, 2))
    d = compare_to_best(Bootstrap(LABELS, NUM_CLASSES, samples=500), {"a": runs(best), "b": runs(half)},
                        None, "a")["b"]
    assert d.mean == pytest.approx(-50.0)
    assert d.significantly_worse and d.low < -50 < d.high


@pytest.mark.parametrize(("k", "worse"), [(2, False), (40, True)])
def test_paired_images_decide_small_gaps(k: int, worse: bool) -> None:
    """b = a except k more wrong images: the paired difference is -k/10 points with a Poisson-like spread
    sqrt(k)/10, far tighter than the unpaired spread of two 60% accuracies (about 2.2 points)."""
    rng = np.random.default_rng(1)
    a = rng.random(LABELS.size) < 0.6
    b = a.copy()
    b[rng.choice(np.flatnonzero(a), size=k, replace=False)] = False
    d = compare_to_best(Bootstrap(LABELS, NUM_CLASSES), {"a": runs(a), "b": runs(b)}, None, "a")["b"]
    assert d.mean == pytest.approx(-k / 10)
    assert d.significantly_worse is worse
    half_width = 1.96 * np.sqrt(k) / 10
    assert d.low == pytest.approx(-k / 10 - half_width, abs=0.5 * half_width + 0.1)
    assert d.high == pytest.approx(min(0.0, -k / 10 + half_width), abs=0.5 * half_width + 0.1)


def test_seed_spread_widens_the_interval() -> None:
    """Seeds that disagree by 35 points make a 3-point gap in the means noise, however many images agree."""
    rng = np.random.default_rng(2)
    order = rng.permutation(LABELS.size)

    def accuracy(pct: int) -> np.ndarray:
        return correct_where(order[: 1000 - 10 * pct])

    steady = runs(accuracy(80), accuracy(80), accuracy(80))
    spread = runs(accuracy(60), accuracy(95), accuracy(76))
    d = compare_to_best(Bootstrap(LABELS, NUM_CLASSES), {"a": steady, "b": spread}, None, "a")["b"]
    assert d.mean == pytest.approx(-3.0)
    assert d.low < -10 and d.high > 0 and not d.significantly_worse


def test_tail_metric_is_the_mean_of_the_tail_classes() -> None:
    a = correct_where(np.array([], dtype=int))
    b = correct_where(np.flatnonzero(LABELS == 9)[:30])  # 30 of class 9's 100 images wrong
    assert point_estimate(runs(b), LABELS, TAIL) == pytest.approx(90.0)
    boot = Bootstrap(LABELS, NUM_CLASSES, samples=500)
    tail = compare_to_best(boot, {"a": runs(a), "b": runs(b)}, TAIL, "a")["b"]
    overall = compare_to_best(boot, {"a": runs(a), "b": runs(b)}, None, "a")["b"]
    assert (tail.mean, overall.mean) == (pytest.approx(-10.0), pytest.approx(-3.0))
    assert tail.significantly_worse and tail.low < -10 < tail.high


def test_same_draws_give_the_same_numbers() -> None:
    rng = np.random.default_rng(3)
    methods = {m: runs(rng.random(LABELS.size) < 0.5, rng.random(LABELS.size) < 0.55) for m in "abc"}
    first = compare_to_best(Bootstrap(LABELS, NUM_CLASSES), methods, TAIL, "a")
    again = compare_to_best(Bootstrap(LABELS, NUM_CLASSES), methods, TAIL, "a")
    assert first == again


def frame(accuracies: dict[str, list[int]]) -> pd.DataFrame:
    """A ``collect``-style frame: per method and seed, the first acc% of every class's images correct."""
    counts = [1000 // (i + 1) for i in range(NUM_CLASSES)]
    rows = []
    for method, per_seed in accuracies.items():
        for seed, pct in enumerate(per_seed):
            correct = np.tile(np.arange(PER_CLASS) < pct, NUM_CLASSES)
            per_class = [pct / 100] * NUM_CLASSES
            rows.append({"run_id": f"{method}-{seed}", "dataset": "fashion-mnist", "arch": "cnn-small", "ur": 100.0,
                         "method": method, "method_label": method, "seed": seed, "test_profile": "balanced",
                         "attack": "pgd20", "acc": pct / 100, "head": pct / 100, "mid": pct / 100,
                         "tail": pct / 100, "worst": pct / 100, "balanced": pct / 100, "per_class_acc": per_class,
                         "per_class_total": [PER_CLASS] * NUM_CLASSES, "correct": correct,
                         "classes": [str(c) for c in range(NUM_CLASSES)], "class_counts": counts})
    return pd.DataFrame(rows)


def test_tables_bold_every_row_not_significantly_worse() -> None:
    (table,) = build_tables(frame({"pgd-at": [40, 41, 40], "reat": [41, 40, 41], "rbl": [20, 21, 20]}))
    assert table.bold("pgd20") == {"pgd-at", "reat"}
    assert table.differences["pgd20"]["rbl"].significantly_worse
    markdown = to_markdown(table)
    assert "**40.33 ± 0.58**" in markdown and "**40.67 ± 0.58**" in markdown and "**20.33" not in markdown
    diffs = differences_markdown(table)
    assert "best" in diffs and "−20.33 [" in diffs
    csv = to_csv(table)
    assert "pgd20_diff_low" in csv.splitlines()[0] and ",pgd20;pgd20_tail," in csv
    assert "not significantly worse" in to_latex(table, "last")


def test_tables_without_per_image_results_bold_the_best_mean() -> None:
    df = frame({"pgd-at": [40, 41, 40], "reat": [41, 40, 41]})
    df.loc[0, "correct"] = None
    (table,) = build_tables(df)
    assert table.differences == {} and "PGD-20" in table.untested
    assert table.bold("pgd20") == {"reat"}
