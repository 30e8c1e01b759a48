"""Feature-space analysis of trained runs: how each method allocates the penultimate feature space to the
classes, clean and under attack (``bench analyze``; metrics defined in docs/analysis.md).

``features`` extracts penultimate features as the evaluator attacks, ``metrics`` computes the per-class
geometry, ``embedding`` the t-SNE maps and ``run`` writes analysis.json for a run or a results tree.

May import: bench.core, bench.data, bench.models, methods, bench.evaluation, bench.training.
"""

from bench.analysis.metrics import PER_CLASS_METRICS, class_geometry, reat_tail_classes
from bench.analysis.run import ANALYSIS_ATTACKS, analysis_file, analyze_path, analyze_run

__all__ = ["ANALYSIS_ATTACKS", "PER_CLASS_METRICS", "analysis_file", "analyze_path", "analyze_run",
           "class_geometry", "reat_tail_classes"]
