"""Evaluation settings: which attacks, on how many test images, of which checkpoint.

They do not change the trained weights, so they are not part of the run id: asking a finished run for more
attacks (``bench eval RESULTS --suite full``) evaluates it again without retraining. eval.json records them.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from bench.core.errors import InputError, unknown_name

ATTACK_KEYS = ("clean", "fgsm", "pgd20", "pgd100", "cw100", "aa")
SUITES: dict[str, tuple[str, ...]] = {
    "fast": ("clean", "pgd20"),
    "paper": ("clean", "pgd20", "pgd100", "cw100", "aa"),
    "full": ATTACK_KEYS,
}
EVAL_BATCH_SIZE = 500
CHECKPOINTS = ("last", "best")
EVAL_PRECISIONS = ("fp32", "bf16")


def check_suite(name: str) -> tuple[str, ...]:
    if name not in SUITES:
        raise unknown_name("evaluation suite", name, list(SUITES))
    return SUITES[name]


def parse_attacks(text: str) -> tuple[str, ...]:
    """``--attacks clean,aa``: known attack keys, in the evaluator's order."""
    names = [a.strip() for a in text.split(",") if a.strip()]
    if not names:
        raise InputError(f"--attacks is empty; e.g. --attacks clean,pgd20 (attacks: {', '.join(ATTACK_KEYS)})")
    for name in names:
        if name not in ATTACK_KEYS:
            raise unknown_name("attack", name, list(ATTACK_KEYS))
    return tuple(k for k in ATTACK_KEYS if k in names)


def radius(value: Any, what: str = "eps") -> float:
    """An L-inf radius: a number >= 0, or a decimal or fraction in text (``0.05``, ``8/255``), never eval'd."""
    if isinstance(value, str):
        try:
            value = float(Fraction(value.strip()))
        except (ValueError, ZeroDivisionError):
            raise InputError(f"{what}: {value!r} is not a radius; give numbers or fractions such as 0.05 or "
                             "8/255") from None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
        raise InputError(f"{what} must be a number >= 0 (e.g. 0.05 or 8/255), got {value!r}")
    return float(value)


def radii(values: Sequence[Any] | str, what: str = "eps") -> tuple[float, ...]:
    """Several radii, without repeats, in the given order: a list or a comma list (``0.025,0.05,8/255``)."""
    items = [v for v in values.split(",") if v.strip()] if isinstance(values, str) else list(values)
    if not items:
        raise InputError(f"{what} is empty; give one or more radii, e.g. 0.025,0.05,8/255")
    return tuple(dict.fromkeys(radius(v, what) for v in items))


def check_count(value: Any, what: str = "eval_n") -> int | None:
    """A positive whole number of test images, or None (``all``)."""
    if value is None or value == "all":
        return None
    if isinstance(value, str):
        try:
            value = int(value)
        except ValueError:
            pass
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise InputError(f"{what} must be a positive number of test images or 'all', got {value!r}")
    return value


@dataclass(frozen=True)
class EvalSettings:
    """What the final evaluation runs; ``n=None`` means every test image."""

    suite: str = "fast"
    attacks: tuple[str, ...] = SUITES["fast"]
    n: int | None = 1000
    checkpoint: str = "last"
    batch_size: int = EVAL_BATCH_SIZE
    #: fp32 (the measurement) or bf16 autocast for the attacks
    precision: str = "fp32"

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "attacks": list(self.attacks)}


def eval_settings(
    base: Mapping[str, Any] | None = None, *, suite: str | None = None, attacks: Sequence[str] | None = None,
    n: Any = None, checkpoint: str | None = None, batch_size: int | None = None, precision: str | None = None,
) -> EvalSettings:
    """Validated settings: ``base`` (a preset's or an earlier eval.json's) updated with what is given.

    ``attacks`` wins over ``suite``; ``n`` may be ``"all"``.
    """
    known = {f.name for f in dataclasses.fields(EvalSettings)}
    base = {k: v for k, v in (base or {}).items() if k in known}
    values = {**dataclasses.asdict(EvalSettings()), **base}
    if suite is not None:
        values["suite"] = suite
        values["attacks"] = check_suite(suite)
    if attacks is not None:
        values["attacks"] = tuple(attacks)
        values["suite"] = next((s for s, keys in SUITES.items() if keys == tuple(attacks)), "custom")
    elif "attacks" not in base:
        values["attacks"] = check_suite(values["suite"])
    if n is not None:
        values["n"] = check_count(n)
    if checkpoint is not None:
        values["checkpoint"] = checkpoint
    if values["checkpoint"] not in CHECKPOINTS:
        raise unknown_name("checkpoint", values["checkpoint"], list(CHECKPOINTS))
    if batch_size is not None:
        values["batch_size"] = batch_size
    if isinstance(values["batch_size"], bool) or not isinstance(values["batch_size"], int) \
            or values["batch_size"] < 1:
        raise InputError(f"evaluation batch size must be a positive whole number, got {values['batch_size']!r}")
    if precision is not None:
        values["precision"] = precision
    if values["precision"] not in EVAL_PRECISIONS:
        raise unknown_name("evaluation precision", values["precision"], list(EVAL_PRECISIONS))
    values["attacks"] = tuple(values["attacks"])
    return EvalSettings(**values)
