"""The Python API: what ``bench run``, ``bench eval --model`` and ``bench report`` do, as functions.

    from bench import api
    records = api.run(["pgd-at", "trades"], dataset="fashion-mnist", ur=100, preset="smoke")
    record = api.evaluate(my_model, dataset="fashion-mnist", ur=100, attacks="fast", n=1000)
    df = api.load_results("results")

Errors are ``bench.errors.BenchError`` (``InputError`` for bad input) with a one-line message.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from torch import nn

from bench import plugins as plugin_modules
from bench import store
from bench.evalsettings import EVAL_BATCH_SIZE, SUITES, eval_settings, parse_attacks
from bench.progress import Progress

__all__ = ["evaluate", "load_results", "run"]


def run(
    methods: str | Sequence[str] = "pgd-at", *, dataset: str = "fashion-mnist", ur: float = 100,
    arch: str = "cnn-small", preset: str = "quick", seed: int = 0, settings: Mapping[str, Any] | None = None,
    suite: str | None = None, eval_n: int | str | None = None, out: str | Path = "results", force: bool = False,
    device: str = "auto", data_root: str | None = None, workers: int = 1, plugins: Iterable[str] = (),
    progress: bool = False,
) -> dict[str, dict[str, Any]]:
    """Train and evaluate ``methods`` (as ``bench run``; ``workers`` > 1 as ``bench grid --workers``).

    ``settings``: config fields and method parameters as ``--set`` takes them, e.g. ``{"epochs": 2,
    "reat.variant": "paper"}``; ``plugins``: modules or .py files as ``--plugin``. Finished runs are not
    retrained. Returns ``{run_id: eval.json record}``.
    """
    from bench.cli.grid_cmd import execute_grid
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


def evaluate(
    model: nn.Module | str | None = None, *, dataset: str, ur: float = 100, attacks: str | Sequence[str] = "fast",
    n: int | str | None = 1000, device: str = "auto", weights: str | Path | None = None, arch: str | None = None,
    label: str | None = None, out: str | Path = "results", eps: float | None = None, step_size: float | None = None,
    seed: int = 0, batch_size: int = EVAL_BATCH_SIZE, precision: str = "fp32", data_root: str | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Evaluate an outside model (as ``bench eval --model``) and return the results asked for: eval.json's header
    with this evaluation's protocol (``eps``, ``n_test``, ...) and its ``attacks``.

    ``model``: an ``nn.Module`` taking images in [0, 1], or ``"PKG.MODULE:FACTORY"``; or None with ``arch`` and
    ``weights`` for one of ltbench's architectures. ``attacks``: a suite name (fast, paper, full) or attack
    keys; ``n``: test images (the stratified first n, or "all"); ``ur``: the imbalance ratio that sets the
    class counts and so the head / mid / tail groups. The run folder goes under ``out`` (``bench report``
    tables it beside trained runs); attacks already there with the same settings are not run again.
    """
    from bench.external import evaluate_external
    from bench.runner import resolve_device

    suite, keys = (attacks, None) if isinstance(attacks, str) and attacks in SUITES else (None, parse_attacks(
        attacks if isinstance(attacks, str) else ",".join(attacks)))
    settings = eval_settings(suite=suite, attacks=keys, n=n, batch_size=batch_size, precision=precision)
    with Progress(progress) as bar:
        _, record = evaluate_external(
            model=model, arch=arch, weights=Path(weights) if weights is not None else None, dataset=dataset, ur=ur,
            out=Path(out), label=label, evaluation=settings, eps=eps, step_size=step_size, seed=seed,
            data_root=data_root, device=resolve_device(device), progress=bar)
    return record


def load_results(path: str | Path = "results", checkpoint: str = "last") -> Any:
    """The report's pandas DataFrame of the finished runs under ``path``: one row per (run, attack), accuracies as
    fractions; columns ``bench.report.collect.COLUMNS`` (run_id, dataset, arch, ur, method, method_label, seed,
    attack, acc, head, mid, tail, worst, balanced, per_class_acc, ...)."""
    from bench.report.collect import collect

    return collect(path, checkpoint)
