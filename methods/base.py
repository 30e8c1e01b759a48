"""The Method interface every training method implements, and the method registry.

The training core and the evaluator only talk to a method through this interface:
they never look at a method's name.
"""

from __future__ import annotations

import reprlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bench.core import plugins
from bench.core.errors import InputError, unknown_name
from bench.models.awp import AWPSettings
from bench.models.net import Output


@dataclass(frozen=True)
class Param:
    """A method hyper-parameter with its default and one-line help."""

    name: str
    default: Any
    help: str
    choices: tuple[Any, ...] | None = None

    def parse(self, value: Any, method: str) -> Any:
        """Coerce ``value`` (possibly a CLI string) to the default's type and check choices."""
        kind = type(self.default)
        try:
            if kind is bool and isinstance(value, str):
                if value.lower() not in ("true", "false", "1", "0", "yes", "no"):
                    raise ValueError(value)
                value = value.lower() in ("true", "1", "yes")
            elif kind is float and not isinstance(value, bool):
                value = float(value)
            elif kind is int and not isinstance(value, bool):
                if float(value) != int(float(value)):
                    raise ValueError(value)
                value = int(float(value))
            elif kind is str:
                value = str(value)
        except (TypeError, ValueError):
            raise InputError(
                f"{method}.{self.name}={value!r} is not a valid {kind.__name__}; e.g. {self.default!r}"
            ) from None
        if self.choices is not None and value not in self.choices:
            raise InputError(
                f"{method}.{self.name}={value!r} is not allowed; choose one of: "
                + ", ".join(map(str, self.choices))
            )
        return value


class Method:
    """Base class: plain CE attack, plain CE outer loss, linear head, identity inference.

    Subclasses override what they change. ``params`` holds the resolved hyper-parameters.
    """

    name: ClassVar[str] = ""
    summary: ClassVar[str] = ""
    params: ClassVar[tuple[Param, ...]] = ()
    #: random start of the training attack: "uniform" (x + U(-eps, eps)), "normal" (x + 0.001 N(0, I))
    #: or "uniform-positive" (x + eps U(0, 1)).
    attack_start: ClassVar[str] = "uniform"
    #: whether ``train_loss`` needs a train-mode forward of the clean images (may change per epoch).
    needs_clean_output: bool = False
    #: PGD steps of the training attack: None = the run's ``steps``; 0 = no attack and no random draws,
    #: the outer loss sees the clean images (may change per epoch, see ``begin_epoch``).
    attack_steps: int | None = None

    def __init__(
        self, params: Mapping[str, Any], class_counts: Sequence[int], device: torch.device | str = "cpu"
    ):
        self.p = dict(params)
        self.device = torch.device(device)
        self.class_counts = torch.as_tensor(list(class_counts), dtype=torch.float32, device=self.device)
        self.num_classes = len(class_counts)

    # --- hyper-parameters -------------------------------------------------------------------
    @classmethod
    def defaults(cls, dataset: str) -> dict[str, Any]:
        """Default hyper-parameters; methods with dataset-specific defaults override this."""
        return {p.name: p.default for p in cls.params}

    @classmethod
    def resolve_params(cls, overrides: Mapping[str, Any], dataset: str) -> dict[str, Any]:
        """Defaults for ``dataset`` updated with validated ``overrides``."""
        by_name = {p.name: p for p in cls.params}
        resolved = cls.defaults(dataset)
        for key, value in overrides.items():
            if key not in by_name:
                known = ", ".join(by_name) or "(none)"
                raise InputError(f"method {cls.name!r} has no parameter {key!r}; its parameters: {known}")
            resolved[key] = by_name[key].parse(value, cls.name)
        return resolved

    # --- the four questions -----------------------------------------------------------------
    def build_head(self, feat_dim: int) -> nn.Module:
        """The classifier head on top of the backbone's features."""
        return nn.Linear(feat_dim, self.num_classes)

    def attack_loss(self, logits: Tensor, y: Tensor, clean_logits: Tensor) -> Tensor:
        """Per-sample loss maximised by the training-time PGD (``clean_logits``: eval-mode, detached)."""
        return F.cross_entropy(logits, y, reduction="none")

    def train_loss(self, out_adv: Output, y: Tensor, out_clean: Output | None = None) -> Tensor:
        """Scalar loss minimised on the adversarial (and, if requested, clean) forward pass."""
        return F.cross_entropy(out_adv.logits, y)

    def attack_budget(self, y: Tensor, eps: float, step_size: float) -> tuple[float | Tensor, float | Tensor]:
        """The training attack's L-inf radius and step size: the run's, or (B, 1, 1, 1) tensors per sample."""
        return eps, step_size

    @classmethod
    def weight_perturbation(cls, params: Mapping[str, Any]) -> AWPSettings | None:
        """The method's own adversarial weight perturbation (``awp``); None: the run's ``awp_gamma`` decides."""
        return None

    def begin_epoch(self, epoch: int, num_epochs: int) -> None:
        """Called before every epoch with its absolute 0-based index, also after a resume."""

    def end_epoch(self, ae_pred_counts: Tensor) -> None:
        """Update method state from the epoch's histogram of the AEs' predicted labels."""

    def predict(self, logits: Tensor) -> Tensor:
        """Inference-time logits (e.g. a boundary adjustment); identity by default."""
        return logits

    # --- state for checkpoints --------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if state:
            raise ValueError(f"method {self.name!r} has no state but the checkpoint holds {sorted(state)}")


REGISTRY: dict[str, type[Method]] = {}
#: wrappers usable as ``WRAPPER+METHOD`` (e.g. ``robustlt+at-bsl``): name -> class factory over the base class
WRAPPERS: dict[str, Callable[[type[Method]], type[Method]]] = {}
_WRAPPED: dict[str, type[Method]] = {}


def register(name: str) -> Callable[[type[Method]], type[Method]]:
    """Class decorator: add a method to the registry under ``name``."""

    def add(cls: type[Method]) -> type[Method]:
        plugins.taken("method", name)
        cls.name = name
        REGISTRY[name] = cls
        plugins.registered("method", name)
        return cls

    return add


def _add_plugin_method(name: str, cls: Any) -> None:
    """An entry point's method: a Method subclass, registered under the entry point's name."""
    if not (isinstance(cls, type) and issubclass(cls, Method)):
        raise InputError(f"method {name!r} must be a subclass of methods.Method, got {reprlib.repr(cls)}")
    register(name)(cls)


plugins.add_registry("method", plugins.Registry(names=lambda: REGISTRY, add=_add_plugin_method,
                                                holds=lambda name, obj: REGISTRY.get(name) is obj))


def register_wrapper(name: str) -> Callable[[Callable[[type[Method]], type[Method]]], Callable]:
    """Decorator: add a factory that wraps any registered method, used as ``name+METHOD``."""

    def add(factory: Callable[[type[Method]], type[Method]]) -> Callable[[type[Method]], type[Method]]:
        WRAPPERS[name] = factory
        return factory

    return add


def get_method(name: str) -> type[Method]:
    """The registered method class called ``name``, or ``WRAPPER+METHOD`` built from a wrapper and a method
    (plugins load on the first call)."""
    plugins.load("method")
    wrapper, plus, base = name.partition("+")
    if plus and wrapper in WRAPPERS:
        if base not in REGISTRY:
            raise unknown_name(f"method for {wrapper}+", base, list(REGISTRY))
        if name not in _WRAPPED:
            cls = WRAPPERS[wrapper](REGISTRY[base])
            cls.name = name
            _WRAPPED[name] = cls
        return _WRAPPED[name]
    if name not in REGISTRY:
        raise unknown_name("method", name, [*REGISTRY, *(f"{w}+METHOD" for w in WRAPPERS)])
    return REGISTRY[name]
