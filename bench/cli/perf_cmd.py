"""``bench perf``: a whole training step of the real core against the reference loop, in one process."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
import torch
from rich.console import Console
from rich.table import Table

from bench.cli.options import data_root_option, parse_workers
from bench.core.device import resolve_device
from bench.core.errors import InputError
from bench.core.precision import PRECISIONS
from bench.data.augment import AUGMENT_MODES
from bench.data.datasets import load_dataset
from bench.data.longtail import LongTailData, long_tail_data
from bench.evaluation.settings import EVAL_BATCH_SIZE, SUITES, parse_attacks
from bench.grid.executors import resolve_workers
from bench.grid.packing import PackingProtocol, measure_packing, one_device
from bench.grid.task import RunResult
from bench.models.inference import InferenceModel
from bench.perf.benchmark import (
    augmentation_rate,
    eval_throughput,
    log,
    perf_config,
    profile_step,
    synthetic_data,
    untrained_model,
    whole_step,
)
from bench.perf.reference import REFERENCE_METHODS
from bench.runs.runner import trained_model
from bench.training.config import PRESETS, RunConfig
from bench.training.loop import attack_graphs


def result_table(r: dict) -> Table:
    title = (f"{r['method']} step, {r['arch']} on {r['dataset']}, batch {r['batch_size']}, PGD-{r['steps']}, "
             f"{r['images']} images, {r['device']}, torch {r['torch']}, {r['threads']} threads")
    table = Table(title=title)
    for col in ("loop", "precision", "images/s", "warm-up s", "peak MiB"):
        table.add_column(col, justify="left" if col in ("loop", "precision") else "right")
    ref, real = r["reference"], r["real"]
    if ref is None:
        table.add_row(f"reference (official-code style): covers {', '.join(REFERENCE_METHODS)} only", "", "–", "",
                      "")
    else:
        table.add_row("reference (official-code style)", "fp32 NCHW", f"{ref['images_per_s']:.1f}",
                      f"{ref['warmup_seconds']:.2f}", f"{ref['peak_mib']:.0f}")
    label = "ltbench core" + (" (compiled)" if r["compile"] else "") + (" (CUDA graphs)" if r["cuda_graph"] else "")
    table.add_row(label, r["precision"], f"{real['images_per_s']:.1f}", f"{real['warmup_seconds']:.2f}",
                  f"{real['peak_mib']:.0f}")
    table.add_section()
    table.add_row("speed-up", "", "–" if r["ratio"] is None else f"{r['ratio']:.2f}x", "", "")
    if r["pgd20_images"] and "eval" not in r:
        table.add_row(f"evaluator PGD-20 ({r['pgd20_images']} images)", "fp32", f"{r['pgd20_images_per_s']:.1f}",
                      "", "")
    return table


def add_eval_rows(table: Table, ev: dict[str, Any]) -> None:
    """The evaluator's rate per attack, under the training step's rows."""
    table.add_section()
    for key, t in ev["attacks"].items():
        table.add_row(f"evaluator {key} ({t['images']} images, {t['attacked']} attacked): "
                      f"{t['seconds']:.1f} s", ev["precision"], f"{t['images_per_s']:.1f}",
                      f"{t['warmup_seconds']:.2f}", f"{t['peak_mib']:.0f}")


def eval_note(ev: dict[str, Any]) -> str:
    """What the evaluator was timed on, and why AutoAttack's rate depends on it."""
    note = (f"evaluator timed on {ev['model']} (fp32, eval mode, batches of {ev['batch_size']}): clean accuracy "
            f"{ev['clean_acc']:.1%} on the {ev['images']} test images")
    if "aa" in ev["attacks"]:
        note += (f"; AutoAttack attacks only the {ev['attacks']['aa']['attacked']} it classifies correctly, the "
                 "other attacks every image")
    return note


def time_evaluator(cfg: RunConfig, data: LongTailData,
                   trained: tuple[RunConfig, LongTailData, InferenceModel, int] | None, attacks: str, n_images: int,
                   device: torch.device) -> dict[str, Any]:
    """The ``eval`` block: the trained run's model (``trained``) or ``cfg``'s untrained one, attack by attack."""
    if trained is None:
        model, source, run = untrained_model(cfg, data, device), f"the untrained {cfg.arch} ({cfg.method})", cfg
    else:
        run, _, model, epoch = trained
        source = f"run {run.run_id}, last checkpoint (epoch {epoch + 1})"
    graphs = attack_graphs(cfg, "fp32", "the evaluator's attacks", log)
    return eval_throughput(model, data, parse_attacks(attacks), n_images, eps=run.eps, step_size=run.step_size,
                           seed=run.seed, source=source, graphs=graphs)


def worker_counts(text: str, device: str) -> list[int]:
    """``--workers 1,4,auto``: distinct worker counts in the given order (auto as `bench grid --workers auto`)."""
    counts = [resolve_workers(parse_workers(item), device, None, lambda line: click.echo(line, err=True))
              for item in text.split(",") if item.strip()]
    if not counts:
        raise InputError("--workers is empty; e.g. --workers 1,4,8")
    return list(dict.fromkeys(counts))


def packing_table(record: dict[str, Any]) -> Table:
    """Runs per hour and the speed-up per worker count."""
    title = (f"packing: {record['method']} runs, {record['arch']} on {record['dataset']} UR {record['ur']:g}"
             f"{' (synthetic)' if record['synthetic'] else ''}, {record['preset']} preset, {record['epochs']} "
             f"epochs, {record['suite']} suite, {record['runs_per_worker']} runs per worker, {record['device']}")
    table = Table(title=title)
    base = record["baseline_workers"]
    for col in ("workers", "runs", "wall s", "runs/hour", f"speed-up over {base} worker{'s' * (base > 1)}"):
        table.add_column(col, justify="right")
    for row in record["results"]:
        table.add_row(str(row["workers"]), str(row["runs"]), f"{row['seconds']:.1f}", f"{row['runs_per_hour']:.1f}",
                      f"{row['speedup']:.2f}x")
    return table


def report_run(result: RunResult) -> None:
    click.echo(f"packing: {result.run_id} {result.status}", err=True)


@click.command("perf")
@click.option("--method", default="reat", show_default=True,
              help="any registered method; the reference loop covers pgd-at, rbl, tail and reat, others are "
                   "timed in the real core alone")
@click.option("--arch", default="cnn-small", show_default=True)
@click.option("--dataset", default="fashion-mnist", show_default=True)
@click.option("--synthetic", is_flag=True, help="random images at the dataset's shape (no files needed)")
@click.option("--ur", default=100.0, show_default=True, type=click.FloatRange(min=1))
@click.option("--batches", default=10, show_default=True, type=click.IntRange(min=1), help="timed batches")
@click.option("--batch-size", default=None, type=click.IntRange(min=1), help="default: the preset's")
@click.option("--preset", default="paper", show_default=True, type=click.Choice(list(PRESETS)),
              help="training protocol (PGD steps, batch size)")
@click.option("--eval-images", default=EVAL_BATCH_SIZE, show_default=True, type=click.IntRange(min=0),
              help="test images for the evaluator's PGD-20 rate (0: skip it) and for --eval")
@click.option("--device", default="cpu", show_default=True, help="cpu, cuda or cuda:N")
@click.option("--precision", default="auto", show_default=True, type=click.Choice(PRECISIONS),
              help="the real core's precision (the reference is always fp32)")
@click.option("--compile", "compile_net", is_flag=True, help="torch.compile the real core (warm-up = compile)")
@click.option("--cuda-graph", "cuda_graph", is_flag=True,
              help="the real core's PGD attacks (training, evaluator PGD-20) as CUDA graphs (run field cuda_graph; "
                   "captured in the warm-up)")
@click.option("--profile", "with_profile", is_flag=True,
              help="also profile one real step (torch.profiler): time per phase and the top operators")
@click.option("--augment", "augment_mode", default=None, type=click.Choice(AUGMENT_MODES[1:]),
              help="also time this training augmentation against the training step it feeds")
@click.option("--json", "as_json", is_flag=True, help="print the measurements as JSON")
@click.option("--eval", "with_eval", is_flag=True,
              help="also time the evaluator's attacks (--eval-attacks) on --eval-images test images")
@click.option("--eval-attacks", default="pgd20,cw100,aa", show_default=True, help="the attacks --eval times")
@click.option("--eval-run", default=None, type=click.Path(file_okay=False, exists=True, path_type=Path),
              help="--eval on this finished run's last checkpoint and test images (its config gives method, arch, "
                   "dataset and UR) instead of the untrained model; implies --eval")
@click.option("--packing", is_flag=True,
              help="instead: runs per hour on this device against --workers (short real runs, --packing-*)")
@click.option("--workers", "workers_list", default="1,2,4", show_default=True,
              help="--packing: worker counts, comma-separated (auto: as `bench grid --workers auto`)")
@click.option("--packing-runs-per-worker", default=2, show_default=True, type=click.IntRange(min=1),
              help="--packing: runs per worker (distinct seeds)")
@click.option("--packing-preset", default="quick", show_default=True, type=click.Choice(list(PRESETS)),
              help="--packing: the runs' preset")
@click.option("--packing-epochs", default=2, show_default=True, type=click.IntRange(min=1),
              help="--packing: the runs' epochs")
@click.option("--packing-suite", default="fast", show_default=True, type=click.Choice(list(SUITES)),
              help="--packing: the runs' final evaluation suite (on the preset's test images)")
@data_root_option
def command(method: str, arch: str, dataset: str, synthetic: bool, ur: float, batches: int, batch_size: int | None,
            preset: str, eval_images: int, device: str, precision: str, compile_net: bool, cuda_graph: bool,
            with_profile: bool, augment_mode: str | None, as_json: bool, with_eval: bool, eval_attacks: str,
            eval_run: Path | None, packing: bool, workers_list: str, packing_runs_per_worker: int, packing_preset: str,
            packing_epochs: int, packing_suite: str, data_root: str | None) -> None:
    """Time one whole training step (attack + update) of the real core against the official-code-style loop.

    --eval adds the evaluator's attacks; --packing measures runs per hour against the number of local workers
    instead (using --method, --arch, --dataset, --ur, --synthetic, --device, --precision and --data-root).
    """
    torch_device = resolve_device(device)
    if packing:
        protocol = PackingProtocol(method, arch, dataset, ur, packing_preset, packing_epochs, packing_suite,
                                   packing_runs_per_worker, precision)
        record = measure_packing(protocol, worker_counts(workers_list, one_device(device)), data_root=data_root,
                                 device=device, synthetic=synthetic, report=report_run)
        if as_json:
            click.echo(json.dumps({"packing": record}, indent=2))
        else:
            Console(width=160).print(packing_table(record))
        return
    with_eval = with_eval or eval_run is not None
    if with_eval and eval_images == 0:
        raise InputError("--eval times the attacks on --eval-images test images; give at least 1")
    if eval_run is not None and synthetic:
        raise InputError("--eval-run times the run's own test images; drop --synthetic")
    trained = trained_model(eval_run, "last", data_root=data_root, device=torch_device) if eval_run else None
    if trained is not None:
        method, arch, dataset = trained[0].method, trained[0].arch, trained[0].dataset
    cfg = perf_config(method, arch, dataset, torch_device, precision, preset, batch_size, compile_net, cuda_graph)
    if trained is not None:
        data = trained[1]
    elif synthetic:
        data = synthetic_data(dataset, ur, torch_device, n_test=max(eval_images, 1))
    else:
        data = long_tail_data(load_dataset(dataset, data_root), ur, torch_device)
    result = whole_step(cfg, data, torch_device, batches, 0 if with_eval else eval_images)
    if with_eval:
        result["eval"] = time_evaluator(cfg, data, trained, eval_attacks, eval_images, torch_device)
        if "pgd20" in result["eval"]["attacks"]:
            pgd20 = result["eval"]["attacks"]["pgd20"]
            result["pgd20_images_per_s"], result["pgd20_images"] = pgd20["images_per_s"], pgd20["images"]
    if with_profile:
        result["profile"] = profile_step(cfg, data, torch_device)
    if augment_mode:
        result["augmentation"] = {"mode": augment_mode,
                                  "images_per_s": augmentation_rate(data, augment_mode, cfg.batch_size, batches)}
    if as_json:
        click.echo(json.dumps(result, indent=2))
        return
    console = Console(width=160)
    table = result_table(result)
    if with_eval:
        add_eval_rows(table, result["eval"])
    console.print(table)
    if with_eval:
        console.print(eval_note(result["eval"]), highlight=False)
    if augment_mode:
        rate, step = result["augmentation"]["images_per_s"], result["real"]["images_per_s"]
        console.print(f"{augment_mode} augmentation: {rate:.0f} images/s against {step:.1f} images/s for the "
                      f"training step it feeds ({step / rate:.1%} of the step's time)")
    if with_profile:
        phases = result["profile"]["phases_ms"]
        total = sum(phases.values())
        console.print("one step: " + ", ".join(f"{p} {ms:.1f} ms ({ms / total:.0%})" for p, ms in phases.items()))
        console.print(result["profile"]["operators"], markup=False, highlight=False)
