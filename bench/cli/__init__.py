"""The ``bench`` command line: run, eval, grid, report, analyze, list, data, perf.

One module per command (``*_cmd``: parse the options, call the layers below, print); ``options`` holds the
options several commands share and ``execute`` the runs of ``bench run`` and ``bench grid``. A command module
imports no other command module.

May import: bench.core, bench.data, bench.models, methods, bench.evaluation, bench.training, bench.analysis,
bench.report, bench.perf, bench.runs, bench.grid.
"""

from __future__ import annotations

import sys
from typing import Any

import click

from bench.core.errors import BenchError

#: exit code after Ctrl-C (128 + SIGINT), as shells report it
INTERRUPTED = 130


class BenchGroup(click.Group):
    """A click group that turns errors into one line on stderr: BenchError and usage errors (exit 2) name
    the fix; Ctrl-C exits 130 and says how to resume."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except BenchError as err:
            click.echo(f"error: {err}", err=True)
            sys.exit(err.exit_code)
        except click.exceptions.NoArgsIsHelpError:
            raise
        except click.UsageError as err:
            where = err.ctx.command_path if err.ctx else "bench"
            click.echo(f"error: {' '.join(err.format_message().split())} (see `{where} --help`)", err=True)
            sys.exit(err.exit_code)
        except KeyboardInterrupt:
            click.echo("interrupted: finished epochs and attacks are saved; rerun the same command to resume",
                       err=True)
            sys.exit(INTERRUPTED)


@click.group(cls=BenchGroup)
@click.version_option(package_name="ltbench")
def main() -> None:
    """ltbench: adversarial training on long-tailed data, evaluated honestly."""


def plugin_option() -> click.Option:
    """``--plugin MODULE`` (repeatable, every command): imported before the command runs."""

    def load(ctx: click.Context, param: click.Parameter, value: tuple[str, ...]) -> None:
        from bench.core import plugins

        plugins.request(value)

    return click.Option(["--plugin"], multiple=True, metavar="MODULE", expose_value=False, is_eager=True,
                        callback=load, help="import a plugin module or .py file first (repeatable) "
                        "[env LTBENCH_PLUGINS=mod1,mod2]")


def _register() -> None:
    from bench.cli import analyze_cmd, data_cmd, eval_cmd, grid_cmd, list_cmd, perf_cmd, report_cmd, run_cmd

    for module in (run_cmd, eval_cmd, grid_cmd, report_cmd, analyze_cmd, list_cmd, data_cmd, perf_cmd):
        module.command.params.insert(0, plugin_option())
        main.add_command(module.command)


_register()
