"""Paired bootstrap over seeds and test images: which methods are significantly below a column's best?

Every method of a comparison table is evaluated on the same test images, and its runs share seeds with
the other methods' runs. One bootstrap replicate draws the test images again, with replacement and
within each class (so every class keeps its image count and per-class accuracies stay defined), and
the seeds again, with replacement; the same draw serves every method, which pairs them. The metric of a
method in a replicate is the mean over its drawn seeds of the run's accuracy on the drawn images. The 95%
interval of (method - best) is the 2.5 and 97.5 percentiles of that difference over the replicates; a
method is *significantly worse* when the whole interval lies below zero.

Counts are integers throughout (image weights times correctness), so the replicates, and the tables
printed from them, are identical on every machine.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

#: bootstrap replicates per table
SAMPLES = 2000
#: confidence of the interval of the difference to the best row
CONFIDENCE = 0.95
#: seed of the bootstrap's draws: a report is the same every time it is built
SEED = 0


@dataclass(frozen=True)
class Runs:
    """One method's runs in a table: ``correct`` is (seeds, images) booleans, rows in ``seeds`` order."""

    seeds: tuple[int, ...]
    correct: np.ndarray


@dataclass(frozen=True)
class Difference:
    """A method against the column's best: mean difference and its interval, in accuracy points (%)."""

    mean: float
    low: float
    high: float

    @property
    def significantly_worse(self) -> bool:
        return self.high < 0


class Bootstrap:
    """The draws of one table: image weights (stratified by class) and, per seed set, seed indices."""

    def __init__(self, labels: np.ndarray, num_classes: int, samples: int = SAMPLES, seed: int = SEED) -> None:
        self.labels = np.asarray(labels)
        self.samples = samples
        self._rng = np.random.default_rng(seed)
        self.class_images = [np.flatnonzero(self.labels == c) for c in range(num_classes)]
        # weights[b, i]: how often replicate b draws image i (a multinomial within the image's class)
        self.weights = np.zeros((samples, self.labels.size), dtype=np.int64)
        for images in self.class_images:
            if images.size:
                self.weights[:, images] = self._rng.multinomial(images.size, np.full(images.size, 1 / images.size),
                                                                size=samples)
        self._seed_draws: dict[tuple[int, ...], np.ndarray] = {}

    def seed_draws(self, seeds: tuple[int, ...]) -> np.ndarray:
        """(samples, len(seeds)) indices into ``seeds``; methods with the same seeds get the same draws."""
        if seeds not in self._seed_draws:
            self._seed_draws[seeds] = self._rng.integers(0, len(seeds), size=(self.samples, len(seeds)))
        return self._seed_draws[seeds]

    def replicates(self, runs: Runs, classes: Sequence[int] | None) -> np.ndarray:
        """The method's metric (%) in every replicate.

        ``classes`` None: accuracy over all images; otherwise the mean per-class accuracy of those classes.
        """
        correct = runs.correct.astype(np.int64)
        if classes is None:
            per_run = self.weights @ correct.T * (100 / self.labels.size)
        else:
            per_class = [self.weights[:, self.class_images[c]] @ correct[:, self.class_images[c]].T
                         * (100 / self.class_images[c].size) for c in classes if self.class_images[c].size]
            per_run = np.mean(per_class, axis=0)
        draws = self.seed_draws(runs.seeds)
        return per_run[np.arange(self.samples)[:, None], draws].mean(axis=1)


def point_estimate(runs: Runs, labels: np.ndarray, classes: Sequence[int] | None) -> float:
    """The metric (%) on all images, averaged over the seeds: the table's mean."""
    correct = runs.correct.astype(float)
    if classes is None:
        return float(correct.mean(axis=1).mean() * 100)
    per_class = [correct[:, labels == c].mean(axis=1) for c in classes if (labels == c).any()]
    return float(np.mean(per_class, axis=0).mean() * 100)


def compare_to_best(bootstrap: Bootstrap, methods: Mapping[str, Runs], classes: Sequence[int] | None,
                    best: str, confidence: float = CONFIDENCE) -> dict[str, Difference]:
    """Every method's difference to ``best`` (the best row's own entry is zero)."""
    base = bootstrap.replicates(methods[best], classes)
    tail = (1 - confidence) / 2 * 100
    out = {}
    for label, runs in methods.items():
        diff = bootstrap.replicates(runs, classes) - base
        low, high = np.percentile(diff, [tail, 100 - tail])
        mean = point_estimate(runs, bootstrap.labels, classes) - point_estimate(methods[best], bootstrap.labels,
                                                                                classes)
        out[label] = Difference(float(mean), float(low), float(high))
    return out
