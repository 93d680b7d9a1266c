"""Expectation suites built from a product's configuration, one per validated frame.

The rules and the Great Expectations expectations that carry them:

- required columns: ``ExpectTableColumnsToMatchSet`` (the curated schema, extra
  columns allowed) on every curated table validated;
- keys present: ``ExpectColumnValuesToNotBeNull`` on the part key and bin
  columns, result keys and the lot id; ``ExpectColumnValuesToBeUnique`` on
  ``part_index``; one MIR per file (``ExpectTableRowCountToEqual``) naming the
  configured product (``ExpectColumnValuesToBeInSet``);
- hard bins declared: ``ExpectColumnValuesToBeInSet`` on ``hard_bin``;
- dies on the wafer (wafer sort, ``wafer:`` in the YAML): coordinates present and
  ``ExpectColumnValuesToBeBetween`` on the derived ``radius``; final test has neither;
- plausible yield: ``ExpectColumnMeanToBeBetween`` on the derived ``good``;
- physical bounds: every parametric result (PTR, and each MPR pin) within its test's
  bounds (``validation.physical_bounds``, else ``default_bounds``): on the ``measurements``
  frame, a row per measurement, its smallest result at or above its lower bound and its
  largest at or below its upper one (``ExpectColumnPairValuesAToBeGreaterThanB``, twice);
- missing results: on the same rows, the share of good dies without the measurement's
  result at most the share allowed (``validation.max_missing_rate``, or the test's own rate
  in ``validation.missing_rates``; ``ExpectColumnPairValuesAToBeGreaterThanB``). A
  stop-on-fail flow skips the rest of the flow on a failing die, so its failing dies lack
  results by design, the more the lower the yield; a good die ran the whole flow in any
  flow, so a result missing there is a datalog gap. The tests checked are those the file
  defines: the product configuration does not list tests.

Rules over a row per measurement rather than an expectation per measurement (see
``frames``): Great Expectations' cost is per expectation. The results name the rows found
(``INDEX_COLUMNS``), and Data Docs list them with their values.
"""

from __future__ import annotations

from collections.abc import Iterable

import great_expectations as gx
import great_expectations.expectations as gxe

from yieldops.config import ProductConfig
from yieldops.curated.schema import LOTS, PARTS, RESULTS, TESTS

from .frames import RESULT_RECORDS

PART_KEYS = ("part_index", "lot_id", "head", "site", "hard_bin")
DIE_KEYS = ("wafer_id", "x", "y")  # wafer sort only
RESULT_KEYS = ("part_index", "test_num", "test_id")
# A die's centre may sit half a die beyond the radius its edge is within.
EDGE_TOLERANCE_DIES = 0.5


# The columns naming the rows a failed rule found, by frame (the others report values only).
INDEX_COLUMNS = {"measurements": ["measurement", "test_name"]}


def expectation_suites(product: ProductConfig) -> dict[str, gx.ExpectationSuite]:
    """Suites by frame name (see ``frames.validation_frames``)."""
    expectations = {
        "lots": lots_expectations(product),
        "parts": parts_expectations(product),
        "tests": tests_expectations(),
        "results": results_expectations(),
        "measurements": measurements_expectations(),
    }
    return {
        frame: gx.ExpectationSuite(name=f"{product.name}.{frame}", expectations=list(found))
        for frame, found in expectations.items()
    }


def lots_expectations(product: ProductConfig) -> list[gxe.Expectation]:
    return [
        gxe.ExpectTableColumnsToMatchSet(column_set=LOTS.names, exact_match=False),
        gxe.ExpectTableRowCountToEqual(value=1),
        gxe.ExpectColumnValuesToNotBeNull(column="lot_id"),
        gxe.ExpectColumnValuesToBeInSet(column="product", value_set=[product.name]),
    ]


def parts_expectations(product: ProductConfig) -> list[gxe.Expectation]:
    low, high = product.validation.yield_range
    found = [
        gxe.ExpectTableColumnsToMatchSet(column_set=PARTS.names, exact_match=False),
        *not_null(PART_KEYS),
        gxe.ExpectColumnValuesToBeUnique(column="part_index"),
        gxe.ExpectColumnValuesToBeInSet(column="hard_bin", value_set=product.bins.declared),
        gxe.ExpectColumnMeanToBeBetween(column="good", min_value=low, max_value=high),
    ]
    if product.wafer is not None:
        found += [
            *not_null(DIE_KEYS),
            gxe.ExpectColumnValuesToBeBetween(
                column="radius",
                min_value=0,
                max_value=product.wafer.radius_dies + EDGE_TOLERANCE_DIES,
            ),
        ]
    return found


def tests_expectations() -> list[gxe.Expectation]:
    return [
        gxe.ExpectTableColumnsToMatchSet(column_set=TESTS.names, exact_match=False),
        *not_null(["test_num", "test_id"]),
        gxe.ExpectColumnValuesToBeUnique(column="test_id"),
    ]


def results_expectations() -> list[gxe.Expectation]:
    return [
        gxe.ExpectTableColumnsToMatchSet(column_set=RESULTS.names, exact_match=False),
        *not_null(RESULT_KEYS),
        gxe.ExpectColumnValuesToBeInSet(column="record", value_set=list(RESULT_RECORDS)),
    ]


def measurements_expectations() -> list[gxe.Expectation]:
    """Each parametric measurement within its test's physical bounds; each measurement
    present on the good dies, but for the allowed missing rate."""
    return [
        _at_least("min", "low", "smallest result at or above the test's lower physical bound"),
        _at_least("high", "max", "largest result at or below the test's upper physical bound"),
        _at_least("allowed_missing_rate", "missing_rate", "share of good dies without a result"),
    ]


def _at_least(column_a: str, column_b: str, notes: str) -> gxe.Expectation:
    """``column_a >= column_b`` on every row where both have a value."""
    return gxe.ExpectColumnPairValuesAToBeGreaterThanB(
        column_A=column_a,
        column_B=column_b,
        or_equal=True,
        ignore_row_if="either_value_is_missing",
        notes=notes,
    )


def not_null(columns: Iterable[str]) -> list[gxe.Expectation]:
    return [gxe.ExpectColumnValuesToNotBeNull(column=column) for column in columns]
