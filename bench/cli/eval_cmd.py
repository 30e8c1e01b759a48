"""``bench eval``: run attacks on trained runs (one run, a results folder or a grid) and print the results."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from bench.cli.eval_tables import per_class_table
from bench.cli.external_opts import evaluate_outside, external_options, outside_model
from bench.cli.options import data_root_option, device_option, parse_n, progress_option
from bench.core import store
from bench.core.device import resolve_device
from bench.core.errors import BenchError, InputError
from bench.core.locks import LockHeld, run_lock
from bench.core.progress import Progress
from bench.evaluation.settings import (
    ATTACK_KEYS,
    CHECKPOINTS,
    EVAL_BATCH_SIZE,
    EVAL_PRECISIONS,
    SUITES,
    eval_settings,
    parse_attacks,
    radii,
)
from bench.grid.spec import expand, load_grid
from bench.runs.runner import earlier_settings, evaluate_run, read_config
from bench.training.config import check_preset


def parse_eps(ctx: click.Context, param: click.Parameter, value: str | None) -> tuple[float, ...] | None:
    """``--eps``: one radius or a comma list; decimals or fractions (``0.05,8/255``)."""
    if value is None:
        return None
    try:
        return radii(value, "--eps")
    except InputError as err:
        raise click.BadParameter(str(err).removeprefix("--eps: ").removeprefix("--eps ")) from None


def runs_table(rows: list[tuple[str, str, dict[str, Any] | str]]) -> Table:
    """One row per run and radius: accuracy (%) under each attack, or why it was not evaluated."""
    table = Table(title="evaluated runs: accuracy (%)")
    table.add_column("run", no_wrap=True)
    table.add_column("eps", justify="right")
    keys = [k for k in ATTACK_KEYS if any(isinstance(r, dict) and k in r["attacks"] for _, _, r in rows)]
    for key in keys:
        table.add_column(key, justify="right")
    table.add_column("note")
    for run_id, eps, rec in rows:
        if isinstance(rec, str):
            table.add_row(run_id, eps, *("-" for _ in keys), rec)
        else:
            table.add_row(run_id, eps, *(f"{100 * rec['attacks'][k]['acc']:.2f}" if k in rec["attacks"] else "-"
                                         for k in keys), "")
    return table


def find_runs(target: str, out: Path) -> tuple[list[Path], bool]:
    """The run folders TARGET names, and whether it named exactly one run.

    TARGET: a run folder (holding config.json), a results folder (every run below it), or a grid file or
    shipped grid name (its runs under ``out``).
    """
    path = Path(target)
    if path.is_dir():
        if (path / store.CONFIG_FILE).exists():
            return [path], True
        runs = list(store.iter_runs(path))
        if not runs:
            raise InputError(f"{path} holds no runs (no {store.CONFIG_FILE} below it); pass a run folder, a "
                             "results folder or a grid")
        return runs, False
    if path.suffix != ".toml" and not path.exists() and ("/" in target or target.startswith(".")):
        raise InputError(f"no run folder, results folder or grid file {target!r}")
    spec = load_grid(target)
    return [out / cfg.run_id for cfg in expand(spec)], False


@click.command("eval")
@click.argument("target", required=False)
@click.option("--suite", default=None, type=click.Choice(list(SUITES)),
              help="attack suite [the one recorded in eval.json, else the run's preset's]")
@click.option("--attacks", default=None, metavar="A,B", help=f"attacks instead of a suite: {', '.join(ATTACK_KEYS)}")
@click.option("--n", "n", default=None, callback=parse_n, metavar="N|all",
              help="test images, the first N/C of every class [as in eval.json, else the preset's; outside "
              "models: 1000]")
@click.option("--batch-size", default=EVAL_BATCH_SIZE, show_default=True, type=click.IntRange(min=1))
@click.option("--checkpoint", default="last", show_default=True, type=click.Choice(CHECKPOINTS))
@click.option("--eps", default=None, callback=parse_eps, metavar="EPS[,EPS...]",
              help="L-inf radii, e.g. 0.05 or 0.025,0.05,8/255 (default: the run's); each keeps its own results")
@click.option("--step-size", default=None, type=click.FloatRange(min=0),
              help="PGD/CW step of a single --eps (default: the run's at its eps, else eps/4)")
@click.option("--out", default="results", show_default=True, type=click.Path(file_okay=False, path_type=Path),
              help="results folder of a grid TARGET, or where an outside model's run folder goes")
@click.option("--precision", default="fp32", show_default=True, type=click.Choice(EVAL_PRECISIONS),
              help="bf16: attacks under bf16 autocast (faster, recorded with the results); never inherited")
@click.option("--wait", is_flag=True, help="wait for runs that another process holds, instead of skipping")
@click.option("--force", is_flag=True, help="run the asked attacks again under the asked protocol and replace "
              "those results (results under other radii, images or precision stay)")
@external_options
@device_option
@data_root_option
@progress_option
def command(target: str | None, suite: str | None, attacks: str | None, n: int | str | None, batch_size: int,
            checkpoint: str, eps: tuple[float, ...] | None, step_size: float | None, out: Path, precision: str,
            wait: bool, force: bool, device: str, data_root: str | None, progress: bool, **outside: Any) -> None:
    """Evaluate the trained runs that TARGET names: a run folder, a results folder, or a grid (file or name);
    or an outside model (--model PKG.MODULE:FACTORY or --arch A, with --weights FILE, --dataset and --ur)
    into a run folder under --out.

    Results go to each run's eval.json (eval-best.json for --checkpoint best), keyed by their protocol
    (radius, step, precision, test images): results under another protocol are kept. Each attack is saved
    when it finishes; a rerun only runs the attacks that are missing (--force: runs them again). Runs are
    never retrained.
    """
    if step_size is not None and eps is not None and len(eps) > 1:
        raise InputError("--step-size applies to a single --eps; leave it out for several radii (each gets "
                         "eps/4, the run's own step at its own eps)")
    radii_asked: tuple[float | None, ...] = eps or (None,)
    if outside_model(target, outside):
        for radius in radii_asked:
            evaluate_outside(outside, suite=suite, attacks=attacks, n=n, batch_size=batch_size,
                             checkpoint=checkpoint, eps=radius, step_size=step_size, out=out, precision=precision,
                             device=device, data_root=data_root, progress=progress)
        return
    chosen = parse_attacks(attacks) if attacks is not None else None
    run_dirs, single = find_runs(target, out)
    torch_device = resolve_device(device)
    rows: list[tuple[str, str, dict[str, Any] | str]] = []

    def skip(run_dir: Path, note: str) -> None:
        rows.append((run_dir.name, "-", note))

    with Progress(progress) as bar:
        for run_dir in run_dirs:
            status = store.run_status(run_dir)
            if not single and status != "done":
                skip(run_dir, f"not evaluated: {status}")
                continue
            if store.is_external(run_dir):
                if single:
                    raise InputError(f"{run_dir} holds an outside model; evaluate it with `bench eval --model ...` "
                                     "or `--arch A --weights FILE` (its config.json names them)")
                skip(run_dir, "not evaluated: outside model (bench eval --model)")
                continue
            if not (run_dir / store.CKPT_DIR / f"{checkpoint}.pt").exists():
                if single:
                    raise InputError(f"{run_dir} has no {checkpoint} checkpoint; train it first with `bench run`")
                skip(run_dir, f"not evaluated: no {checkpoint} checkpoint")
                continue
            try:
                preset = check_preset(read_config(run_dir).preset).eval_settings().to_dict()
                settings = eval_settings({**preset, **earlier_settings(run_dir, checkpoint)}, suite=suite,
                                         attacks=chosen, n=n, checkpoint=checkpoint, batch_size=batch_size,
                                         precision=precision)
                with run_lock(run_dir, bar.log, wait=wait):
                    views = evaluate_run(run_dir, settings, data_root=data_root, device=torch_device,
                                         progress=bar, eps=radii_asked, step_size=step_size, force=force)
                rows += [(run_dir.name, f"{view['eps']:g}", view) for view in views]
            except LockHeld as held:
                if single:
                    raise BenchError(f"{run_dir.name} is {held}; rerun with --wait to wait for it") from None
                skip(run_dir, f"skipped: {held}")
            except BenchError as err:
                if single:
                    raise
                skip(run_dir, f"failed: {err}")
    console = Console(width=160)
    if single:
        config = store.read_json(run_dirs[0] / store.CONFIG_FILE)
        for _, _, view in rows:
            console.print(per_class_table(view, config["classes"], config["class_counts"]))  # type: ignore[arg-type]
        return
    console.print(runs_table(rows))
    evaluated = {run_id for run_id, _, view in rows if isinstance(view, dict)}
    if not evaluated:
        raise BenchError(f"no finished run to evaluate among {len(run_dirs)} (train them with `bench run` or "
                         "`bench grid` first)")
    failed = [note for _, _, note in rows if isinstance(note, str) and note.startswith("failed")]
    if failed:
        raise BenchError(f"{len(failed)} of {len(run_dirs)} runs could not be evaluated: {failed[0]}")
