"""Training methods; importing this package fills the registry."""

from methods import at_bsl, pgd_at, rbl, reat, robal, taet, tail, trades  # noqa: F401  (each registers itself)
from methods.base import REGISTRY, Method, Output, Param, get_method, register

__all__ = ["REGISTRY", "Method", "Output", "Param", "get_method", "register"]
