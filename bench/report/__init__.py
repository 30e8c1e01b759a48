"""Reports of a results tree: pandas tables (Markdown, CSV, LaTeX), seaborn figures and an index.md.

``collect`` gives one row per (finished run, attack); ``problem_runs`` lists unfinished and failed runs;
``write_report`` writes everything (the ``bench report`` command calls it).

May import: bench.core, bench.evaluation, bench.training.
"""

from bench.report.collect import RunProblem, collect, problem_runs
from bench.report.index import write_report

__all__ = ["RunProblem", "collect", "problem_runs", "write_report"]
