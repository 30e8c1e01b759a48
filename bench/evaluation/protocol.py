"""The protocol of a stored attack result, and eval.json's results grouped by protocol.

A result is keyed by its attack and its protocol: the L-inf radius ``eps``, the PGD/CW ``step_size``, the
evaluation ``precision`` and the test images (``test_profile`` and ``n_test``: the class-stratified first
``n_test`` images, which the count fixes); the checkpoint is the file (eval.json, eval-best.json).

eval.json keeps the results under the run's *primary* protocol (its training eps and step size, fp32, on the
test images of its first such evaluation) in the top-level ``attacks``, with ``eps``, ``step_size``,
``precision``, ``test_profile``, ``n_test`` and ``subset`` beside it, so files written before protocols
existed read unchanged. Results under any other protocol are entries of ``protocols``, each with those keys
and its own ``attacks``. Clean accuracy has no radius: it is kept under the run's eps and step size with
the test images and precision it was measured on.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from bench.evaluation.settings import ATTACK_KEYS

#: attacks whose result depends on the step size
STEPPED = frozenset({"pgd20", "pgd100", "cw100"})
#: the fields of a protocol entry besides ``attacks``, in the order eval.json writes them
FIELDS = ("eps", "step_size", "precision", "test_profile", "n_test", "subset")
#: a primary protocol's evaluation precision
PRIMARY_PRECISION = "fp32"


class MalformedResults(ValueError):
    """An eval record whose results cannot be read; the message says which part."""


@dataclass(frozen=True, order=True)
class Protocol:
    """Everything a stored attack result depends on besides the attack, the weights and the seed."""

    precision: str
    test_profile: str
    n_test: int
    eps: float
    step_size: float

    def label(self) -> str:
        return (f"eps {self.eps:g}, step {self.step_size:g}, {self.precision}, {self.n_test} {self.test_profile} "
                "test images")


@dataclass
class Block:
    """The results under one protocol: attack key -> result (eval.json's attack entry)."""

    protocol: Protocol
    subset: str
    attacks: dict[str, dict[str, Any]] = field(default_factory=dict)

    def fields(self) -> dict[str, Any]:
        """The protocol's eval.json fields (``FIELDS``)."""
        values = {**dataclasses.asdict(self.protocol), "subset": self.subset}
        return {key: values[key] for key in FIELDS}

    def put(self, key: str, result: dict[str, Any]) -> None:
        """Store ``result`` under ``key``, keeping the attacks in the evaluator's order."""
        self.attacks[key] = result
        self.attacks = {k: self.attacks[k] for k in ATTACK_KEYS if k in self.attacks}


def default_step(eps: float, run_eps: float, run_step: float) -> float:
    """The PGD/CW step at radius ``eps``: the run's own step at its own eps, else eps/4."""
    return run_step if eps == run_eps else eps / 4


def fits(key: str, params: Mapping[str, Any], protocol: Protocol) -> bool:
    """Whether a result of attack ``key`` with ``params`` was measured at ``protocol``'s radius, step and
    precision (its parameters record them; the test images are the caller's to compare)."""
    return (params.get("precision", PRIMARY_PRECISION) == protocol.precision
            and params.get("eps", protocol.eps) == protocol.eps
            and (key not in STEPPED or params.get("step_size", protocol.step_size) == protocol.step_size))


def _number(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise MalformedResults(f"{what} must be a number, got {value!r}")
    return float(value)


def _attacks(value: Any, what: str) -> dict[str, dict[str, Any]]:
    if not isinstance(value, dict) or not all(isinstance(res, dict) for res in value.values()):
        raise MalformedResults(f"{what} must map attack names to results")
    return dict(value)


def _images(result: Mapping[str, Any]) -> int | None:
    """The test images a result counted (records without ``n_test``)."""
    totals = result.get("per_class_total")
    return sum(totals) if isinstance(totals, list) and all(isinstance(t, int) for t in totals) else None


def _entry(entry: Any, index: int) -> Block:
    where = f"protocols[{index}]"
    if not isinstance(entry, dict) or "attacks" not in entry:
        raise MalformedResults(f"{where} must be an object with {', '.join(FIELDS)} and attacks")
    n_test = entry.get("n_test")
    if isinstance(n_test, bool) or not isinstance(n_test, int):
        raise MalformedResults(f"{where}.n_test must be a whole number, got {n_test!r}")
    texts = [entry.get(key) for key in ("precision", "test_profile", "subset")]
    if not all(isinstance(text, str) for text in texts):
        raise MalformedResults(f"{where}: precision, test_profile and subset must be strings")
    protocol = Protocol(texts[0], texts[1], n_test, _number(entry.get("eps"), f"{where}.eps"),
                        _number(entry.get("step_size"), f"{where}.step_size"))
    return Block(protocol, texts[2], _attacks(entry["attacks"], f"{where}.attacks"))


@dataclass
class EvalResults:
    """An eval record's results: the primary block (None until the run's own protocol is evaluated) and the
    blocks of other protocols."""

    run_eps: float
    run_step: float
    primary: Block | None = None
    others: list[Block] = field(default_factory=list)

    @classmethod
    def read(cls, record: Mapping[str, Any], run_eps: float, run_step: float) -> EvalResults:
        """The results of ``record`` (an eval.json) of a run trained at ``run_eps`` / ``run_step``.

        Top-level results measured at another radius, step or precision (files written before protocols
        existed, by an evaluation with --eps or --precision) move to the block of their own protocol.
        Raises MalformedResults when a part cannot be read.
        """
        results = cls(float(run_eps), float(run_step))
        top = _attacks(record.get("attacks", {}), "attacks")
        if top:
            profile, subset = record.get("test_profile", "balanced"), record.get("subset", "all")
            n_test = record.get("n_test", _images(next(iter(top.values()))))
            if isinstance(n_test, bool) or not isinstance(n_test, int):
                raise MalformedResults(f"n_test must be a whole number, got {n_test!r}")
            primary = Protocol(PRIMARY_PRECISION, str(profile), n_test, results.run_eps, results.run_step)
            for key, res in top.items():
                params = res.get("params") or {}
                own = primary if fits(key, params, primary) else results.measured_at(key, params, primary)
                results.block(own, str(subset)).attacks.setdefault(key, res)
        entries = record.get("protocols", [])
        if not isinstance(entries, list):
            raise MalformedResults("protocols must be a list")
        for index, entry in enumerate(entries):
            parsed = _entry(entry, index)
            block = results.block(parsed.protocol, parsed.subset)
            for key, res in parsed.attacks.items():
                block.attacks.setdefault(key, res)
        return results

    def measured_at(self, key: str, params: Mapping[str, Any], like: Protocol) -> Protocol:
        """The protocol a result's parameters record, on the test images of ``like``."""
        eps = float(params.get("eps", self.run_eps))
        step = params["step_size"] if key in STEPPED and "step_size" in params else \
            default_step(eps, self.run_eps, self.run_step)
        return dataclasses.replace(like, eps=eps, step_size=float(step),
                                   precision=str(params.get("precision", PRIMARY_PRECISION)))

    def is_primary(self, protocol: Protocol) -> bool:
        """The run's own eps, step and fp32, on the primary test images (any, before the first result)."""
        if (protocol.eps, protocol.step_size, protocol.precision) != (self.run_eps, self.run_step,
                                                                      PRIMARY_PRECISION):
            return False
        return self.primary is None or not self.primary.attacks or self.primary.protocol == protocol

    def home(self, key: str, protocol: Protocol) -> Protocol:
        """Where attack ``key`` asked at ``protocol`` is kept: clean accuracy at the run's own radius."""
        if key == "clean":
            return dataclasses.replace(protocol, eps=self.run_eps, step_size=self.run_step)
        return protocol

    def find(self, protocol: Protocol) -> Block | None:
        """The block of ``protocol``, if there is one."""
        return next((b for b in (self.primary, *self.others) if b is not None and b.protocol == protocol), None)

    def block(self, protocol: Protocol, subset: str) -> Block:
        """The block of ``protocol``, created when missing (as the primary one when it is the run's own)."""
        found = self.find(protocol)
        if found is None:
            found = Block(protocol, subset)
            if self.is_primary(protocol):
                self.primary = found
            else:
                self.others.append(found)
        return found

    def blocks(self) -> list[Block]:
        """The blocks holding results: the primary first, then the others by precision, test images, eps, step."""
        primary = [self.primary] if self.primary is not None and self.primary.attacks else []
        return primary + sorted((b for b in self.others if b.attacks), key=lambda b: b.protocol)

    def write(self, record: dict[str, Any]) -> dict[str, Any]:
        """``record`` with these results: the primary's fields and attacks at the top, the others under
        ``protocols`` (absent when there are none, as in files written before protocols existed)."""
        header = {k: v for k, v in record.items() if k not in (*FIELDS, "subset_rule", "attacks", "protocols")}
        primary = self.primary if self.primary is not None and self.primary.attacks else None
        rule = {"subset_rule": record["subset_rule"]} if "subset_rule" in record else {}
        top = {**primary.fields(), **rule, "attacks": primary.attacks} if primary is not None else {"attacks": {}}
        others = [{**b.fields(), "attacks": b.attacks} for b in self.blocks() if b is not primary]
        return {**header, **top, "protocols": others} if others else {**header, **top}
