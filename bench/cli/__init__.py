"""The ``bench`` command line: run, eval, grid, report, analyze, list, data, perf."""

from __future__ import annotations

import sys
from typing import Any

import click

from bench.errors import BenchError


class BenchGroup(click.Group):
    """A click group that turns BenchError into a one-line message and its exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except BenchError as err:
            click.echo(f"error: {err}", err=True)
            sys.exit(err.exit_code)


@click.group(cls=BenchGroup)
@click.version_option(package_name="ltbench")
def main() -> None:
    """ltbench: adversarial training on long-tailed data, evaluated honestly."""


def _register() -> None:
    from bench.cli import analyze_cmd, data_cmd, eval_cmd, grid_cmd, list_cmd, perf_cmd, report_cmd, run_cmd

    for module in (run_cmd, eval_cmd, grid_cmd, report_cmd, analyze_cmd, list_cmd, data_cmd, perf_cmd):
        main.add_command(module.command)


_register()
