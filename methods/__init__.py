"""Training methods; importing this package fills the registry."""

from methods import at_bsl, awp, pgd_at, rbl, reat, robal, robustlt, taet, tail, trades  # noqa: F401  (each registers itself)
from methods.base import REGISTRY, WRAPPERS, Method, Output, Param, get_method, register

__all__ = ["REGISTRY", "WRAPPERS", "Method", "Output", "Param", "get_method", "register"]
