"""RunConfig: everything that changes the trained weights, presets, overrides and the run id.

Each field and its default live in one line of ``RunConfig`` (the defaults are the ``quick`` preset on
Fashion-MNIST-LT); a preset lists only what it changes. Evaluation settings (suite, test images, checkpoint,
batch size) are not here: see ``bench.evaluation.settings``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from bench.core.errors import BenchError, InputError, unknown_name
from bench.core.precision import PRECISIONS
from bench.data.augment import AUGMENT_MODES
from bench.data.datasets import dataset_info
from bench.data.longtail import TEST_PROFILES, max_ur
from bench.evaluation.settings import SUITES, EvalSettings, eval_settings
from bench.models import check_arch
from methods import get_method

ATTACK_BN = ("eval", "train")
#: lr decays at these fractions of the epochs (60 and 75 of 80 in the official REAT code)
MILESTONE_FRACTIONS = (0.75, 0.9375)
Check = Callable[[str, Any], Any]


def number(*, positive: bool = False, integer: bool = False, optional: bool = False) -> Check:
    """A check for a finite number (>= 0, or > 0 with ``positive``); ``optional`` also allows None."""

    def check(name: str, value: Any) -> Any:
        if optional and value is None:
            return None
        kind = "a whole number" if integer else "a number"
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise InputError(f"{name} must be {kind}, got {value!r}")
        if integer and value != int(value):
            raise InputError(f"{name} must be a whole number, got {value!r}")
        if positive and value <= 0:
            raise InputError(f"{name} must be positive, got {value!r}")
        if value < 0:
            raise InputError(f"{name} must not be negative, got {value!r}")
        return int(value) if integer else float(value)

    return check


def choice(*values: str) -> Check:
    def check(name: str, value: Any) -> Any:
        if value not in values:
            raise InputError(f"{name} must be one of {', '.join(values)}, got {value!r}")
        return value

    return check


def boolean(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise InputError(f"{name} must be true or false, got {value!r}")
    return value


def epochs_list(name: str, value: Any) -> tuple[int, ...]:
    """Milestones: a list of whole epochs (checked against ``epochs`` in ``build_config``)."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        value = [value]
    if not isinstance(value, list | tuple) or not all(
            isinstance(m, int) and not isinstance(m, bool) for m in value):
        raise InputError(f"{name} must be a list of whole epochs, e.g. {name}=[60,75], got {value!r}")
    return tuple(value)


def setting(default: Any, check: Check | None = None, *, flag: str | None = None, hashed_default: bool = True) -> Any:
    """A RunConfig field: its default, its check, and the option that sets it when ``--set`` may not.

    ``hashed_default=False`` for fields added after runs were published: at their default they are left out of
    the run id's canonical JSON, so every earlier run keeps its id.
    """
    return field(default=default, metadata={"check": check, "flag": flag, "hashed_default": hashed_default})


@dataclass(frozen=True)
class RunConfig:
    """A fully resolved run; its canonical JSON defines the run id. Add a training field with one line."""

    dataset: str = setting("fashion-mnist", flag="--dataset")
    ur: float = setting(100.0, flag="--ur")
    arch: str = setting("cnn-small", flag="--arch")
    method: str = setting("pgd-at", flag="--methods")
    method_params: Mapping[str, Any] = field(default_factory=dict, metadata={"flag": "--set METHOD.PARAM=..."})
    preset: str = setting("quick", flag="--preset")
    epochs: int = setting(10, number(positive=True, integer=True))
    batch_size: int = setting(128, number(positive=True, integer=True))
    lr: float = setting(0.1, number(positive=True))
    momentum: float = setting(0.9, number())
    weight_decay: float = setting(5e-4, number())
    milestones: tuple[int, ...] = setting((8, 9), epochs_list)  # default: MILESTONE_FRACTIONS of the epochs
    lr_gamma: float = setting(0.1, number(positive=True))
    eps: float = setting(0.1, number())  # default: 0.1 for 28x28 images, 8/255 for 32x32
    step_size: float = setting(0.025, number())  # default: eps / 4
    steps: int = setting(5, number(integer=True))
    augment: str = setting("none", choice(*AUGMENT_MODES))  # default: the dataset's
    seed: int = setting(0, flag="--seed")
    #: test images of the per-epoch clean / PGD-20 numbers that pick best.pt (None: all)
    epoch_eval_n: int | None = setting(500, number(positive=True, integer=True, optional=True))
    #: fp32 or bf16 autocast; "auto" is hashed as "auto" and resolved where the run trains (bench/core/precision.py)
    precision: str = setting("auto", choice(*PRECISIONS))
    compile: bool = setting(False, boolean)  # torch.compile the backbone and head
    #: balanced (the official test split) or lt (the run's UR applied to the test split as well)
    test_profile: str = setting("balanced", choice(*TEST_PROFILES))
    #: BatchNorm while the training attack crafts: eval (running statistics) or train (batch statistics,
    #: running statistics frozen, as RobustLT's code does)
    attack_bn: str = setting("eval", choice(*ATTACK_BN), hashed_default=False)
    #: adversarial weight perturbation around any method's outer loss (0: off; bench/models/awp.py)
    awp_gamma: float = setting(0.0, number(), hashed_default=False)
    awp_warmup: int = setting(0, number(integer=True), hashed_default=False)  # epochs without AWP
    awp_lr: float = setting(0.01, number(positive=True), hashed_default=False)  # the proxy's SGD step
    #: capture the PGD attacks (training, per-epoch test, final evaluation) as CUDA graphs, one per batch shape;
    #: fp32, attack_bn eval and compile false only, eager otherwise (bench/evaluation/graphed.py)
    cuda_graph: bool = setting(False, boolean, hashed_default=False)

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["method_params"] = dict(sorted(self.method_params.items()))
        out["milestones"] = list(self.milestones)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RunConfig:
        data = dict(data)
        unknown = sorted(set(data) - set(FIELDS))
        if unknown:
            raise BenchError(f"the run config has fields {unknown} that this ltbench does not know (written by "
                             "another version); retrain it with this version")
        data["milestones"] = tuple(data.get("milestones", ()))
        return cls(**data)

    def identity(self) -> dict[str, Any]:
        """What the run id hashes: ``to_dict`` without the later fields that still have their default."""
        data = self.to_dict()
        return {f.name: data[f.name] for f in dataclasses.fields(self)
                if f.metadata.get("hashed_default", True) or data[f.name] != f.default}

    @property
    def config_hash(self) -> str:
        canonical = json.dumps(self.identity(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:10]

    @property
    def run_id(self) -> str:
        return f"{self.dataset}-ur{self.ur:g}-{self.arch}-{self.method}-{self.preset}-s{self.seed}-{self.config_hash}"


FIELDS = {f.name: f for f in dataclasses.fields(RunConfig)}
DEFAULTS = RunConfig()
#: the fields added after runs were published, with their defaults: a config.json written before a field existed
#: ran with its default (so a report reads the missing field as that)
LATE_DEFAULTS = {name: value for name, value in DEFAULTS.to_dict().items()
                 if not FIELDS[name].metadata.get("hashed_default", True)}
#: fields one may set with --set key=value (method parameters use METHOD.PARAM=value)
SETTABLE = sorted(name for name, f in FIELDS.items() if f.metadata.get("flag") is None)
#: evaluation settings people try to --set, and the option that sets them
EVAL_KEYS = {"eval_suite": "--suite (grid: suite = ...)", "suite": "--suite (grid: suite = ...)",
             "eval_n": "--eval-n (grid: eval_n = ...)"}


@dataclass(frozen=True)
class Preset:
    """What a preset changes: training fields of RunConfig and evaluation settings."""

    description: str
    training: Mapping[str, Any] = field(default_factory=dict)
    evaluation: Mapping[str, Any] = field(default_factory=dict)

    def fields(self) -> dict[str, Any]:
        """Every training field this preset gives (defaults included)."""
        return {name: self.training.get(name, getattr(DEFAULTS, name)) for name in FIELDS}

    def eval_settings(self) -> EvalSettings:
        return eval_settings(self.evaluation)


PRESETS: dict[str, Preset] = {
    "paper": Preset("official REAT protocol: 80 epochs, SGD 0.1, lr x0.1 at 60/75, PGD-10 training",
                    {"epochs": 80, "steps": 10, "epoch_eval_n": None}, {"suite": "paper", "n": None}),
    "quick": Preset("CPU minutes: 10 epochs, PGD-5 training, 1000 test images"),
    "smoke": Preset("tests, seconds: 1 epoch, PGD-2 training, 100 test images",
                    {"epochs": 1, "batch_size": 64, "steps": 2, "epoch_eval_n": 100}, {"n": 100}),
}


def parse_value(text: str) -> Any:
    """A --set value: JSON when it parses (numbers, booleans, lists), else the string itself."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def check_preset(name: str) -> Preset:
    if name not in PRESETS:
        raise unknown_name("preset", name, list(PRESETS))
    return PRESETS[name]


def check_ur(ur: Any, dataset: str) -> float:
    """UR >= 1 that leaves every class of ``dataset`` at least one training image."""
    try:
        value = float(ur)
    except (TypeError, ValueError):
        value = math.nan
    if isinstance(ur, bool) or not (math.isfinite(value) and value >= 1):
        raise InputError(f"imbalance ratio UR must be a number >= 1 (1 = balanced), got {ur!r}")
    info = dataset_info(dataset)
    largest = max_ur(info.train_per_class, info.num_classes)
    if value > largest:
        raise InputError(f"UR {value:g} leaves classes of {dataset} without a training image; the largest "
                         f"valid UR for {dataset} is {largest:g}")
    return value


def check_overrides(overrides: Mapping[str, Any]) -> None:
    """Names that ``--set`` (or a grid's ``[set]``) may not give, each with the option that does."""
    for key in overrides:
        if key in EVAL_KEYS:
            raise InputError(f"{key} is an evaluation setting, not a training field; use {EVAL_KEYS[key]}")
        if key in FIELDS and key not in SETTABLE:
            flag = FIELDS[key].metadata["flag"]
            raise InputError(f"{key} is set with {flag} (grids: {key}s = [...]), not with --set")
        if key not in FIELDS:
            raise InputError(f"unknown config field {key!r}; settable fields: {', '.join(SETTABLE)}")


def build_config(
    *,
    method: str = DEFAULTS.method,
    dataset: str = DEFAULTS.dataset,
    ur: Any = DEFAULTS.ur,
    arch: str = DEFAULTS.arch,
    preset: str = DEFAULTS.preset,
    seed: Any = DEFAULTS.seed,
    overrides: Mapping[str, Any] | None = None,
    method_params: Mapping[str, Any] | None = None,
) -> RunConfig:
    """Resolve a preset plus overrides into a validated RunConfig (raises InputError).

    Nothing here depends on the machine: ``precision`` stays as asked (``auto`` included), so the same
    command gives the same run id everywhere; ``auto`` is resolved when the run trains.
    """
    get_method(method)
    info = dataset_info(dataset)
    check_arch(arch)
    values = check_preset(preset).fields()
    overrides = dict(overrides or {})
    check_overrides(overrides)
    eps = overrides.get("eps", 0.1 if info.image_size <= 28 else 8 / 255)
    values |= {"augment": info.augment, "eps": eps, "step_size": eps / 4 if isinstance(eps, int | float) else eps}
    values |= overrides
    for name in SETTABLE:
        values[name] = FIELDS[name].metadata["check"](name, values[name])
    if "milestones" in overrides:
        last = values["epochs"] - 1
        ms = values["milestones"]
        if ms and last < 1:
            raise InputError(f"a {values['epochs']}-epoch run has no epoch to decay the learning rate at; "
                             f"drop --set milestones (got {list(ms)}) or train longer")
        if any(not 1 <= m <= last for m in ms) or list(ms) != sorted(set(ms)):
            raise InputError(f"milestones must be increasing epochs inside the {values['epochs']}-epoch run "
                             f"(1..{last}), e.g. milestones=[{max(1, last // 2)}], got {list(ms)}")
    else:
        values["milestones"] = tuple(sorted({m for f in MILESTONE_FRACTIONS
                                             if 0 < (m := round(f * values["epochs"])) < values["epochs"]}))
    seed = number(integer=True)("seed", seed)
    params = get_method(method).resolve_params(method_params or {}, dataset)
    if values["awp_gamma"] > 0 and get_method(method).weight_perturbation(params) is not None:
        raise InputError(f"method {method} already perturbs weights (its own gamma); drop --set awp_gamma or "
                         "train pgd-at with --set awp_gamma=...")
    return RunConfig(**{**values, "dataset": dataset, "ur": check_ur(ur, dataset), "arch": arch, "method": method,
                        "method_params": params, "preset": preset, "seed": seed})


__all__ = ["DEFAULTS", "PRESETS", "SETTABLE", "SUITES", "Preset", "RunConfig", "build_config", "parse_value"]
