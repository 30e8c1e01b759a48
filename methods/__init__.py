"""Training methods; importing this package fills the registry.

``base`` holds the Method interface and the registry; each method's module registers itself, and ``composed``,
``rebalancing`` and ``tail_loss`` hold the parts that several methods share.

May import: bench.core, bench.data, bench.models.
"""

from methods import at_bsl, awp, pgd_at, rbl, reat, robal, robustlt, taet, tail, trades  # noqa: F401  (each registers itself)
from methods.base import REGISTRY, WRAPPERS, Method, Output, Param, get_method, register

__all__ = ["REGISTRY", "WRAPPERS", "Method", "Output", "Param", "get_method", "register"]
