"""``bench eval --model PKG.MODULE:FACTORY | --arch A --weights FILE --dataset D --ur U``: outside models."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
from rich.console import Console

from bench.core import store
from bench.core.errors import InputError
from bench.runs.external import evaluate_outside_model

#: --arch names an ltbench architecture to build; with --model it only names the architecture in reports
OPTIONS = [
    click.option("--model", default=None, metavar="PKG.MODULE:FACTORY",
                 help="outside model: FACTORY(num_classes=C) or FACTORY() returns an nn.Module taking [0, 1] images"),
    click.option("--weights", default=None, type=click.Path(dir_okay=False, path_type=Path),
                 help="weights of the outside model: a state_dict, or a checkpoint dict under state_dict/model/net"),
    click.option("--arch", default=None, help="with --weights alone: build this ltbench architecture (linear head); "
                 "with --model: the architecture's name in reports [external]"),
    click.option("--dataset", default=None, help="dataset of the outside model (see `bench list datasets`)"),
    click.option("--ur", default=100.0, show_default=True, type=float,
                 help="imbalance ratio it was trained at: sets the class counts and head / mid / tail groups"),
    click.option("--label", default=None, help="its name in reports and in the run id [the weights' file name]"),
    click.option("--seed", "attack_seed", default=0, show_default=True, type=int, help="seed of the attacks' starts"),
]


def external_options(f: Callable[..., Any]) -> Callable[..., Any]:
    for option in reversed(OPTIONS):
        f = option(f)
    return f


def outside_model(target: str | None, outside: dict[str, Any]) -> bool:
    """Whether `bench eval` evaluates an outside model (and not TARGET's runs); bad combinations are errors."""
    given = [f"--{k}" for k in ("model", "weights", "arch", "dataset", "label") if outside[k] is not None]
    if target is None and not given:
        raise InputError("bench eval needs a TARGET (run folder, results folder or grid) or an outside model "
                         "(--model PKG.MODULE:FACTORY or --arch A --weights FILE, with --dataset)")
    if target is not None and given:
        raise InputError(f"{', '.join(given)} evaluate an outside model and take no TARGET; drop {target!r}")
    if given and outside["dataset"] is None:
        raise InputError("an outside model needs --dataset (see `bench list datasets`)")
    return bool(given)


def evaluate_outside(outside: dict[str, Any], *, suite: str | None, attacks: str | None, n: int | str | None,
                     batch_size: int, checkpoint: str, eps: float | None, step_size: float | None, out: Path,
                     precision: str, device: str, data_root: str | None, progress: bool) -> None:
    """Evaluate it with ``evaluate_outside_model`` (``bench.api.evaluate``) and print the per-class table."""
    from bench.cli.eval_tables import per_class_table

    if checkpoint != "last":
        raise InputError("--checkpoint is for trained runs; an outside model has only its --weights")
    record = evaluate_outside_model(outside["model"], dataset=outside["dataset"], ur=outside["ur"],
                          attacks=attacks or suite or "fast", n=1000 if n is None else n, device=device,
                          weights=outside["weights"], arch=outside["arch"], label=outside["label"], out=out, eps=eps,
                          step_size=step_size, seed=outside["attack_seed"], batch_size=batch_size,
                          precision=precision, data_root=data_root, progress=progress)
    config = store.read_json(out / record["run_id"] / store.CONFIG_FILE)
    Console(width=160).print(per_class_table(record, config["classes"], config["class_counts"]))
    click.echo(f"results in {out / record['run_id']}")
