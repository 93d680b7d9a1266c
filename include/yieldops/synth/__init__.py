"""Synthetic fab: lots of wafers of dies with learnable, visible yield loss, written as STDF V4.

>>> from yieldops.synth import synthesize
>>> paths = synthesize("landing/", lots=3, wafers_per_lot=2, seed=0)  # doctest: +SKIP
>>> paths = synthesize("landing/", lots=4, tester_style="smartest")  # doctest: +SKIP
"""

from .catalog import DEFAULT_PRODUCT, PMIC_PRODUCT, PRODUCTS
from .fab import DEFAULT_DRIFT, Lot, Wafer, generate_lot
from .files import lot_to_bytes, synthesize, write_lot
from .product import (
    Bin,
    DefectModel,
    FunctionalTest,
    MultiPinTest,
    ParametricTest,
    ProductSpec,
)
from .styles import TESTER_STYLES, TesterStyle, resolve_style

__all__ = [
    "DEFAULT_DRIFT",
    "DEFAULT_PRODUCT",
    "PMIC_PRODUCT",
    "PRODUCTS",
    "TESTER_STYLES",
    "Bin",
    "DefectModel",
    "FunctionalTest",
    "Lot",
    "MultiPinTest",
    "ParametricTest",
    "ProductSpec",
    "TesterStyle",
    "Wafer",
    "generate_lot",
    "lot_to_bytes",
    "resolve_style",
    "synthesize",
    "write_lot",
]
