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
- physical bounds: ``ExpectColumnValuesToBeBetween`` on every parametric
  measurement column (PTR, and each MPR pin);
- missing results: ``ExpectColumnValuesToNotBeNull`` with ``mostly`` (1 minus
  ``validation.max_missing_rate``, or the test's own rate in
  ``validation.missing_rates``) on every measurement column of the good dies
  (``good_measurements``). A stop-on-fail flow skips the rest of the flow on a
  failing die, so its failing dies lack results by design, the more the lower the
  yield; a good die ran the whole flow in any flow, so a result missing there is
  a datalog gap. The tests checked are those the file defines (``measurements``):
  the product configuration does not list tests. (A frame of the good dies, not a
  ``row_condition``: Great Expectations runs a condition as a pandas query that
  re-reads every column name, which made a file of 400 tests take minutes.)
"""

from __future__ import annotations

from collections.abc import Iterable

import great_expectations as gx
import great_expectations.expectations as gxe
import pyarrow as pa

from yieldops.config import ProductConfig
from yieldops.curated.schema import LOTS, PARTS, RESULTS, TESTS

from .frames import RESULT_RECORDS, Measurement, measurements

PART_KEYS = ("part_index", "lot_id", "head", "site", "hard_bin")
DIE_KEYS = ("wafer_id", "x", "y")  # wafer sort only
RESULT_KEYS = ("part_index", "test_num", "test_id")
# A die's centre may sit half a die beyond the radius its edge is within.
EDGE_TOLERANCE_DIES = 0.5


def expectation_suites(product: ProductConfig, tests: pa.Table) -> dict[str, gx.ExpectationSuite]:
    """Suites by frame name (see ``frames.validation_frames``) for a file with these tests."""
    expectations = {
        "lots": lots_expectations(product),
        "parts": parts_expectations(product),
        "tests": tests_expectations(),
        "results": results_expectations(),
        "measurements": bounds_expectations(product, measurements(tests)),
        "good_measurements": missing_expectations(product, measurements(tests)),
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


def bounds_expectations(
    product: ProductConfig, measured: Iterable[Measurement]
) -> list[gxe.Expectation]:
    """Each parametric measurement within the test's physical bounds."""
    found: list[gxe.Expectation] = []
    for m in measured:
        if m.parametric:
            low, high = product.validation.bounds(m.test_num, m.test_id)
            found.append(
                gxe.ExpectColumnValuesToBeBetween(
                    column=m.column, min_value=low, max_value=high, notes=m.test_name
                )
            )
    return found


def missing_expectations(
    product: ProductConfig, measured: Iterable[Measurement]
) -> list[gxe.Expectation]:
    """Each measurement present on the good dies, but for the allowed missing rate."""
    return [
        gxe.ExpectColumnValuesToNotBeNull(
            column=m.column,
            mostly=1 - product.validation.missing_rate(m.test_num, m.test_id),
            notes=m.test_name,
        )
        for m in measured
    ]


def not_null(columns: Iterable[str]) -> list[gxe.Expectation]:
    return [gxe.ExpectColumnValuesToNotBeNull(column=column) for column in columns]
