"""Options shared by several commands; their defaults come from RunConfig and the evaluation settings."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from bench.core.errors import InputError
from bench.evaluation.settings import SUITES, check_count
from bench.grid.executors import Workers
from bench.grid.spec import split_settings
from bench.training.config import parse_value

device_option = click.option("--device", default="auto", show_default=True,
                             help="auto (CUDA if available), cpu, cuda or cuda:N")
data_root_option = click.option("--data-root", default=None, envvar="LTBENCH_DATA",
                                help="dataset folder [env LTBENCH_DATA; default ./data]")
progress_option = click.option("--progress/--no-progress", default=True, help="show progress bars")


def set_option(f: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--set", "settings", multiple=True, metavar="KEY=VALUE",
                        help="override a config field (lr=0.05) or a method parameter (reat.variant=paper)")(f)


def training_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """--set, --suite, --eval-n, --out, --force, --wait, --device, --data-root and --progress
    (shared by `bench run` and `bench grid`)."""
    options = [
        set_option,
        click.option("--suite", default=None, help=f"evaluation suite: {', '.join(SUITES)} [the preset's]"),
        click.option("--eval-n", default=None, metavar="N|all", help="test images of the final evaluation "
                     "[the preset's]; not part of the run id"),
        click.option("--out", default="results", show_default=True,
                     type=click.Path(file_okay=False, path_type=Path)),
        click.option("--force", is_flag=True, help="retrain runs that already finished"),
        click.option("--wait", is_flag=True, help="wait for runs that another process holds, instead of skipping"),
        device_option, data_root_option, progress_option,
    ]
    for option in reversed(options):
        f = option(f)
    return f


def parse_settings(settings: tuple[str, ...] | list[str]) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """Split KEY=VALUE strings into config-field overrides and per-method parameter overrides."""
    flat: dict[str, Any] = {}
    for item in settings:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key or key.startswith(".") or key.endswith("."):
            raise InputError(f"--set expects KEY=VALUE or METHOD.PARAM=VALUE (e.g. --set lr=0.05), got {item!r}")
        flat[key] = parse_value(raw)
    return split_settings(flat)


def parse_n(ctx: click.Context, param: click.Parameter, value: str | None) -> int | str | None:
    """``--n``: a positive number of test images or ``all``."""
    if value is None or value == "all":
        return value
    try:
        return check_count(value, "--n")
    except InputError as err:
        raise click.BadParameter(f"expected a positive number of test images or 'all', got {value!r}") from err


def parse_workers(text: str) -> Workers:
    """A number of local workers (>= 1) or ``auto``."""
    if text.strip() == "auto":
        return "auto"
    try:
        workers = int(text)
    except ValueError:
        workers = 0
    if workers < 1:
        raise InputError(f"--workers takes a number of workers >= 1 or auto, got {text!r}")
    return workers


class WorkersParam(click.ParamType):
    """``--workers N|auto``."""

    name = "N|auto"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Workers:
        if isinstance(value, int):
            return value
        try:
            return parse_workers(str(value))
        except InputError as err:
            self.fail(str(err), param, ctx)
