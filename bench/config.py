"""RunConfig: everything that changes a result, presets, overrides and the run id."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from bench.data import AUGMENT_MODES, TEST_PROFILES, dataset_info
from bench.errors import InputError, unknown_name
from bench.evaluate import check_suite
from bench.models import check_arch
from methods import get_method

#: lr decays at these fractions of the epochs (60 and 75 of 80 in the official REAT code)
MILESTONE_FRACTIONS = (0.75, 0.9375)


@dataclass(frozen=True)
class Preset:
    epochs: int
    batch_size: int
    steps: int
    eval_suite: str
    epoch_eval_n: int | None  # test images for the per-epoch clean / PGD-20 numbers (None: all)
    eval_n: int | None  # test images for the final evaluation (None: all)
    description: str


PRESETS: dict[str, Preset] = {
    "paper": Preset(80, 128, 10, "paper", None, None,
                    "official REAT protocol: 80 epochs, SGD 0.1, lr x0.1 at 60/75, PGD-10 training"),
    "quick": Preset(10, 128, 5, "fast", 500, 1000, "CPU minutes: 10 epochs, PGD-5 training, 1000 test images"),
    "smoke": Preset(1, 64, 2, "fast", 100, 100, "tests, seconds: 1 epoch, PGD-2 training, 100 test images"),
}


@dataclass(frozen=True)
class RunConfig:
    """A fully resolved run; its canonical JSON defines the run id."""

    dataset: str = "fashion-mnist"
    ur: float = 100.0
    arch: str = "cnn-small"
    method: str = "pgd-at"
    method_params: Mapping[str, Any] = field(default_factory=dict)
    preset: str = "quick"
    epochs: int = 6
    batch_size: int = 128
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    milestones: tuple[int, ...] = (4, 5)
    lr_gamma: float = 0.1
    eps: float = 0.1
    step_size: float = 0.025
    steps: int = 5
    augment: str = "none"
    seed: int = 0
    epoch_eval_n: int | None = 500
    eval_suite: str = "fast"
    eval_n: int | None = 1000
    test_profile: str = "balanced"  # balanced | lt: the run's UR applied to the test split as well

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["method_params"] = dict(sorted(self.method_params.items()))
        out["milestones"] = list(self.milestones)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RunConfig:
        data = dict(data)
        data["milestones"] = tuple(data["milestones"])
        return cls(**data)

    @property
    def config_hash(self) -> str:
        canonical = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:10]

    @property
    def run_id(self) -> str:
        return f"{self.dataset}-ur{self.ur:g}-{self.arch}-{self.method}-{self.preset}-s{self.seed}-{self.config_hash}"


FIELD_TYPES = {f.name: f.type for f in dataclasses.fields(RunConfig)}
#: fields one may set with --set key=value (method parameters use method.param=value)
SETTABLE = sorted(set(FIELD_TYPES) - {"method", "method_params", "preset", "dataset", "arch"})


def parse_value(text: str) -> Any:
    """A --set value: JSON when it parses (numbers, booleans, lists), else the string itself."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _check_number(name: str, value: Any, *, positive: bool = False, integer: bool = False) -> Any:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InputError(f"{name} must be a number, got {value!r}")
    if integer and value != int(value):
        raise InputError(f"{name} must be a whole number, got {value!r}")
    if positive and value <= 0:
        raise InputError(f"{name} must be positive, got {value!r}")
    if value < 0:
        raise InputError(f"{name} must not be negative, got {value!r}")
    return int(value) if integer else float(value)


def build_config(
    *,
    method: str,
    dataset: str = "fashion-mnist",
    ur: Any = 100,
    arch: str = "cnn-small",
    preset: str = "quick",
    seed: Any = 0,
    overrides: Mapping[str, Any] | None = None,
    method_params: Mapping[str, Any] | None = None,
) -> RunConfig:
    """Resolve a preset plus overrides into a validated RunConfig (raises InputError)."""
    get_method(method)
    info = dataset_info(dataset)
    check_arch(arch)
    if preset not in PRESETS:
        raise unknown_name("preset", preset, list(PRESETS))
    try:
        ur = float(ur)
    except (TypeError, ValueError):
        raise InputError(f"imbalance ratio UR must be a number >= 1, got {ur!r}") from None
    if not (math.isfinite(ur) and ur >= 1):
        raise InputError(f"imbalance ratio UR must be a number >= 1, got {ur!r}")
    p = PRESETS[preset]
    small = info.image_size <= 28
    values: dict[str, Any] = {
        "epochs": p.epochs, "batch_size": p.batch_size, "steps": p.steps, "eval_suite": p.eval_suite,
        "epoch_eval_n": p.epoch_eval_n, "eval_n": p.eval_n, "augment": info.augment,
        "eps": 0.1 if small else 8 / 255,
    }
    overrides = dict(overrides or {})
    unknown = set(overrides) - set(SETTABLE)
    if unknown:
        raise InputError(f"unknown config field(s) {sorted(unknown)}; settable fields: {', '.join(SETTABLE)}")
    values.update(overrides)
    values["epochs"] = _check_number("epochs", values["epochs"], positive=True, integer=True)
    values["batch_size"] = _check_number("batch size", values["batch_size"], positive=True, integer=True)
    values["steps"] = _check_number("steps", values["steps"], integer=True)
    values["eps"] = _check_number("eps", values["eps"])
    values.setdefault("step_size", values["eps"] / 4)
    values["step_size"] = _check_number("step size", values["step_size"])
    for name in ("lr", "momentum", "weight_decay", "lr_gamma"):
        if name in values:
            values[name] = _check_number(name, values[name])
    for name in ("epoch_eval_n", "eval_n"):
        if values[name] is not None:
            values[name] = _check_number(name, values[name], positive=True, integer=True)
    if "milestones" in values:
        values["milestones"] = tuple(_check_number("milestone", m, integer=True) for m in values["milestones"])
    else:
        values["milestones"] = tuple(round(f * values["epochs"]) for f in MILESTONE_FRACTIONS)
    check_suite(values["eval_suite"])
    if values["augment"] not in AUGMENT_MODES:
        raise InputError(f"augment must be one of {', '.join(AUGMENT_MODES)}; got {values['augment']!r}")
    if values.get("test_profile", "balanced") not in TEST_PROFILES:
        raise InputError(f"test_profile must be one of {', '.join(TEST_PROFILES)}; got {values['test_profile']!r}")
    params = get_method(method).resolve_params(method_params or {}, dataset)
    return RunConfig(
        dataset=dataset, ur=ur, arch=arch, method=method, method_params=params, preset=preset,
        seed=_check_number("seed", seed, integer=True), **values,
    )
