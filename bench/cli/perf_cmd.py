"""``bench perf``: a whole training step of the real core against the reference loop, in one process."""

from __future__ import annotations

import json

import click
from rich.console import Console
from rich.table import Table

from bench.cli.options import data_root_option
from bench.core.device import resolve_device
from bench.core.precision import PRECISIONS
from bench.data.augment import AUGMENT_MODES
from bench.data.datasets import load_dataset
from bench.data.longtail import long_tail_data
from bench.evaluation.settings import EVAL_BATCH_SIZE
from bench.perf.benchmark import augmentation_rate, perf_config, profile_step, synthetic_data, whole_step
from bench.training.config import PRESETS


def result_table(r: dict) -> Table:
    title = (f"{r['method']} step, {r['arch']} on {r['dataset']}, batch {r['batch_size']}, PGD-{r['steps']}, "
             f"{r['images']} images, {r['device']}, torch {r['torch']}, {r['threads']} threads")
    table = Table(title=title)
    for col in ("loop", "precision", "images/s", "warm-up s", "peak MiB"):
        table.add_column(col, justify="left" if col in ("loop", "precision") else "right")
    ref, real = r["reference"], r["real"]
    table.add_row("reference (official-code style)", "fp32 NCHW", f"{ref['images_per_s']:.1f}",
                  f"{ref['warmup_seconds']:.2f}", f"{ref['peak_mib']:.0f}")
    label = "ltbench core" + (" (compiled)" if r["compile"] else "") + (" (CUDA graphs)" if r["cuda_graph"] else "")
    table.add_row(label, r["precision"], f"{real['images_per_s']:.1f}", f"{real['warmup_seconds']:.2f}",
                  f"{real['peak_mib']:.0f}")
    table.add_section()
    table.add_row("speed-up", "", f"{r['ratio']:.2f}x", "", "")
    if r["pgd20_images"]:
        table.add_row(f"evaluator PGD-20 ({r['pgd20_images']} images)", "fp32", f"{r['pgd20_images_per_s']:.1f}",
                      "", "")
    return table


@click.command("perf")
@click.option("--method", default="reat", show_default=True,
              help="pgd-at, rbl, tail or reat (the methods the reference loop covers)")
@click.option("--arch", default="cnn-small", show_default=True)
@click.option("--dataset", default="fashion-mnist", show_default=True)
@click.option("--synthetic", is_flag=True, help="random images at the dataset's shape (no files needed)")
@click.option("--ur", default=100.0, show_default=True, type=click.FloatRange(min=1))
@click.option("--batches", default=10, show_default=True, type=click.IntRange(min=1), help="timed batches")
@click.option("--batch-size", default=None, type=click.IntRange(min=1), help="default: the preset's")
@click.option("--preset", default="paper", show_default=True, type=click.Choice(list(PRESETS)),
              help="training protocol (PGD steps, batch size)")
@click.option("--eval-images", default=EVAL_BATCH_SIZE, show_default=True, type=click.IntRange(min=0),
              help="test images for the evaluator's PGD-20 rate (0: skip it)")
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
@data_root_option
def command(method: str, arch: str, dataset: str, synthetic: bool, ur: float, batches: int, batch_size: int | None,
            preset: str, eval_images: int, device: str, precision: str, compile_net: bool, cuda_graph: bool,
            with_profile: bool, augment_mode: str | None, as_json: bool, data_root: str | None) -> None:
    """Time one whole training step (attack + update) of the real core against the official-code-style loop."""
    torch_device = resolve_device(device)
    cfg = perf_config(method, arch, dataset, torch_device, precision, preset, batch_size, compile_net, cuda_graph)
    if synthetic:
        data = synthetic_data(dataset, ur, torch_device, n_test=max(eval_images, 1))
    else:
        data = long_tail_data(load_dataset(dataset, data_root), ur, torch_device)
    result = whole_step(cfg, data, torch_device, batches, eval_images)
    if with_profile:
        result["profile"] = profile_step(cfg, data, torch_device)
    if augment_mode:
        result["augmentation"] = {"mode": augment_mode,
                                  "images_per_s": augmentation_rate(data, augment_mode, cfg.batch_size, batches)}
    if as_json:
        click.echo(json.dumps(result, indent=2))
        return
    console = Console(width=160)
    console.print(result_table(result))
    if augment_mode:
        rate, step = result["augmentation"]["images_per_s"], result["real"]["images_per_s"]
        console.print(f"{augment_mode} augmentation: {rate:.0f} images/s against {step:.1f} images/s for the "
                      f"training step it feeds ({step / rate:.1%} of the step's time)")
    if with_profile:
        phases = result["profile"]["phases_ms"]
        total = sum(phases.values())
        console.print("one step: " + ", ".join(f"{p} {ms:.1f} ms ({ms / total:.0%})" for p, ms in phases.items()))
        console.print(result["profile"]["operators"], markup=False, highlight=False)
