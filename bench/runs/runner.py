"""One run end to end inside its folder: training (resumable), evaluation, done marker; and `bench eval`."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from bench.core import plugins, store
from bench.core.errors import BenchError, InputError
from bench.core.progress import Progress
from bench.data.longtail import LongTailData
from bench.evaluation.protocol import default_step
from bench.evaluation.settings import EvalSettings
from bench.evaluation.suite import epoch_validation, eval_record, evaluate
from bench.models.inference import InferenceModel
from bench.training.config import RunConfig
from bench.training.loop import attack_graphs, build_trainee, run_data, train


def config_record(cfg: RunConfig, data: LongTailData) -> dict[str, Any]:
    """config.json: the run id and config, the classes and their training counts, and any plugins it uses."""
    record = {"run_id": cfg.run_id, "config": cfg.to_dict(), "classes": list(data.classes),
              "class_counts": data.class_counts}
    used = plugins.run_plugins(cfg)
    return record | {"plugins": used} if used else record


def read_config(run_dir: Path) -> RunConfig:
    """The RunConfig in ``run_dir/config.json``."""
    path = Path(run_dir) / store.CONFIG_FILE
    record = store.read_json(path)
    plugins.require(record.get("plugins") or [], str(run_dir))
    try:
        return RunConfig.from_dict(record["config"])
    except BenchError as err:
        raise BenchError(f"{path}: {err}") from None
    except (KeyError, TypeError, ValueError) as err:
        raise BenchError(f"{path} is not a run config ({type(err).__name__}: {err}); delete the run folder "
                         "or rerun with --force") from None


def run_one(
    cfg: RunConfig, evaluation: EvalSettings, run_dir: Path, *, data_root: str | None, device: torch.device,
    progress: Progress, eval_eps: Sequence[float] = (),
) -> dict[str, Any]:
    """Train and evaluate one run in ``run_dir`` (the caller holds its lock), then mark it done.

    The attacks run at the run's own eps, then at each radius of ``eval_eps``; returns the first results.
    """
    progress.log(f"{cfg.run_id}: training {cfg.method} on {cfg.dataset}-LT UR {cfg.ur:g} ({cfg.arch}, {device})")
    data = run_data(cfg, data_root, device)
    store.write_json(run_dir / store.CONFIG_FILE, config_record(cfg, data))
    validate = epoch_validation(data, n=cfg.epoch_eval_n, eps=cfg.eps, step_size=cfg.step_size, seed=cfg.seed,
                                progress=progress)
    trainee = train(cfg, data, run_dir, device, progress, validate)
    radii = (None, *(e for e in eval_eps if e != cfg.eps))
    record = evaluate_checkpoint(run_dir, cfg, data, trainee.net, trainee.method, evaluation, device, progress,
                                 radii=radii)[0]
    store.mark_done(run_dir)
    return record


def load_weights(run_dir: Path, checkpoint: str, net: torch.nn.Module, method: Any,
                 device: torch.device) -> dict[str, Any]:
    """Load the run's ``checkpoint`` (last or best) into ``net`` and ``method``; returns the checkpoint."""
    state = store.load_checkpoint(run_dir / store.CKPT_DIR / f"{checkpoint}.pt", device)
    net.load_state_dict(state["model"])
    method.load_state_dict(state["method"])
    return state


def evaluate_checkpoint(
    run_dir: Path, cfg: RunConfig, data: LongTailData, net: torch.nn.Module, method: Any, evaluation: EvalSettings,
    device: torch.device, progress: Progress, *, radii: Sequence[float | None] = (None,),
    step_size: float | None = None, force: bool = False,
) -> list[dict[str, Any]]:
    """Load the checkpoint into ``net``/``method`` once and run the attacks at each radius, keeping them in
    eval(-best).json.

    A radius of None is the run's own; ``step_size`` defaults to the run's at its own eps, else eps/4. Results
    already in the file under the same protocol are kept (``force`` runs the asked attacks again); results
    under other protocols are never touched. With the run's ``cuda_graph`` FGSM, PGD and CW run through
    CUDA-graph runners (see ``bench.training.loop.attack_graphs``). Returns the asked results per radius (see
    ``evaluate``).
    """
    checkpoint = evaluation.checkpoint
    state = load_weights(run_dir, checkpoint, net, method, device)
    out_path = run_dir / store.eval_file(checkpoint)
    earlier = store.read_json(out_path) if out_path.exists() else {}
    if (earlier.get("attacks") or earlier.get("protocols")) and earlier.get("epoch") != state["epoch"]:
        progress.log(f"{out_path.name} holds another epoch's results; evaluating the checkpoint afresh")
        earlier = {}
    record = {**earlier, **eval_record(store.read_json(run_dir / store.CONFIG_FILE), checkpoint, state["epoch"],
                                       device)}
    graphs = attack_graphs(cfg, evaluation.precision, "the evaluation", progress.log)
    views = []
    for radius in radii:  # ``evaluate`` keeps ``record`` equal to the file it saves
        eps = cfg.eps if radius is None else radius
        step = default_step(eps, cfg.eps, cfg.step_size) if step_size is None else step_size
        at = "" if (eps, step) == (cfg.eps, cfg.step_size) else f" at eps {eps:g} (step {step:g})"
        progress.log(f"{cfg.run_id}: evaluating the {checkpoint} checkpoint (epoch {state['epoch'] + 1}){at}: "
                     f"{', '.join(evaluation.attacks)}")
        views.append(evaluate(
            InferenceModel(net, method), data, attacks=evaluation.attacks, eps=eps, step_size=step, seed=cfg.seed,
            n=evaluation.n, batch_size=evaluation.batch_size, record=record,
            save=functools.partial(store.write_json, out_path), progress=progress,
            run_radius=(cfg.eps, cfg.step_size), precision=evaluation.precision, settings=evaluation.to_dict(),
            force=force, graphs=graphs,
        ))
    return views


def earlier_settings(run_dir: Path, checkpoint: str) -> dict[str, Any]:
    """The evaluation settings recorded in the run's eval(-best).json ({} when there is none)."""
    path = Path(run_dir) / store.eval_file(checkpoint)
    if not path.exists():
        return {}
    recorded = store.read_json(path).get("evaluation")
    return recorded if isinstance(recorded, dict) else {}


def trained_config(run_dir: Path, checkpoint: str) -> RunConfig:
    """The config of a run folder that holds ``checkpoint``; InputError naming the fix when it is not one."""
    if not (run_dir / store.CONFIG_FILE).exists():
        raise InputError(f"{run_dir} is not a run folder (no {store.CONFIG_FILE}); pass results/<run_id>")
    cfg = read_config(run_dir)
    if not (run_dir / store.CKPT_DIR / f"{checkpoint}.pt").exists():
        raise InputError(f"{run_dir} has no {checkpoint} checkpoint; train it first with `bench run`")
    return cfg


def trained_model(run_dir: Path, checkpoint: str, *, data_root: str | None,
                  device: torch.device) -> tuple[RunConfig, LongTailData, InferenceModel, int]:
    """A finished run's config, data and model with ``checkpoint`` loaded, and the checkpoint's epoch."""
    run_dir = Path(run_dir)
    cfg = trained_config(run_dir, checkpoint)
    data = run_data(cfg, data_root, device)
    trainee = build_trainee(cfg, data, device)
    state = load_weights(run_dir, checkpoint, trainee.net, trainee.method, device)
    return cfg, data, InferenceModel(trainee.net, trainee.method), state["epoch"]


def evaluate_run(
    run_dir: Path, evaluation: EvalSettings, *, data_root: str | None, device: torch.device, progress: Progress,
    eps: Sequence[float | None] = (None,), step_size: float | None = None, force: bool = False,
) -> list[dict[str, Any]]:
    """``bench eval`` of one trained run (the caller holds its lock): the attacks at each radius of ``eps``
    (None: the run's own); one result record per radius."""
    run_dir = Path(run_dir)
    cfg = trained_config(run_dir, evaluation.checkpoint)
    data = run_data(cfg, data_root, device)
    trainee = build_trainee(cfg, data, device)
    return evaluate_checkpoint(run_dir, cfg, data, trainee.net, trainee.method, evaluation, device, progress,
                               radii=eps, step_size=step_size, force=force)
