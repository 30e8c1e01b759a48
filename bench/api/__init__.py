"""The Python API: what ``bench run``, ``bench eval --model`` and ``bench report`` do, as functions.

    from bench import api
    records = api.run(["pgd-at", "trades"], dataset="fashion-mnist", ur=100, preset="smoke")
    record = api.evaluate(my_model, dataset="fashion-mnist", ur=100, attacks="fast", n=1000)
    df = api.load_results("results")

Errors are ``bench.core.errors.BenchError`` (``InputError`` for bad input) with a one-line message.

May import: bench.core, bench.data, bench.models, methods, bench.evaluation, bench.training, bench.analysis,
bench.report, bench.perf, bench.runs, bench.grid, bench.cli.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from bench.core import plugins as plugin_modules
from bench.core import store
from bench.grid.executors import Workers
from bench.runs.external import evaluate_outside_model as evaluate

__all__ = ["evaluate", "load_results", "run"]


def run(
    methods: str | Sequence[str] = "pgd-at", *, dataset: str = "fashion-mnist", ur: float = 100,
    arch: str = "cnn-small", preset: str = "quick", seed: int = 0, settings: Mapping[str, Any] | None = None,
    suite: str | None = None, eval_n: int | str | None = None, out: str | Path = "results", force: bool = False,
    device: str = "auto", data_root: str | None = None, workers: Workers = 1, plugins: Iterable[str] = (),
    progress: bool = False,
) -> dict[str, dict[str, Any]]:
    """Train and evaluate ``methods`` (as ``bench run``; ``workers`` > 1 or ``"auto"`` as ``bench grid --workers``).

    ``settings``: config fields and method parameters as ``--set`` takes them, e.g. ``{"epochs": 2,
    "reat.variant": "paper"}``; ``plugins``: modules or .py files as ``--plugin``. Finished runs are not
    retrained. Returns ``{run_id: eval.json record}``.
    """
    from bench.cli.execute import execute_grid
    from bench.cli.run_cmd import one_cell_grid
    from bench.grid.spec import expand, split_settings

    plugin_modules.request(plugins)
    names = methods if isinstance(methods, str) else ",".join(methods)
    spec = one_cell_grid(names, dataset, str(ur), arch, preset, str(seed), suite,
                         None if eval_n is None else str(eval_n))
    fields, params = split_settings(dict(settings or {}))
    configs = expand(spec, fields=fields, params=params)
    evaluation = spec.evaluation()
    execute_grid(configs, evaluation, Path(out), source="bench.api.run", force=force, wait=False, device=device,
                 data_root=data_root, progress=progress, workers=workers)
    return {cfg.run_id: store.read_json(Path(out) / cfg.run_id / store.eval_file(evaluation.checkpoint))
            for cfg in configs}




def load_results(path: str | Path = "results", checkpoint: str = "last") -> Any:
    """The report's pandas DataFrame of the finished runs under ``path``: one row per (run, attack), accuracies as
    fractions; columns ``bench.report.collect.COLUMNS`` (run_id, dataset, arch, ur, method, method_label, seed,
    attack, acc, head, mid, tail, worst, balanced, per_class_acc, ...)."""
    from bench.report.collect import collect

    return collect(path, checkpoint)
