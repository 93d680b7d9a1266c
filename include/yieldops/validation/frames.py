"""The pandas frames one decoded STDF file is validated as.

Each curated table is validated as it is (its columns, keys and codes), and frames are
derived for the rules that need them:

- ``parts`` gains ``radius`` (distance of the die from the wafer centre, in dies)
  and ``good`` (hard bin in the product's good bins);
- ``measurements``: one row per measurement the file defines (the PTR result of a test,
  each pin's result of a multi-pin test: MPR, ``<test_id>.pin<k>``, a pin being a separate
  measurement with the test's physical bounds, and the pass/fail of each functional test,
  FTR), named as the model's features are (``curated.identity``), with the test's name, its
  physical bounds (``low``, ``high``; none for FTR), the ``min`` and ``max`` of its results
  and how many there are below and above the bounds, and how many of the ``good_dies`` have
  no result for it (``missing``, ``missing_rate``) against the share the product allows
  (``allowed_missing_rate``). A test repeated on a part counts as the product's
  ``repeats.tests`` says (first, else last).

One row per measurement, not one column (a part x measurement pivot): Great Expectations
spends ~20 ms on each expectation whatever its data, so an expectation per measurement
column cost a file of 850 tests 11 s; three expectations over the rows cost milliseconds,
and a failure still names each measurement (its row) with its values.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa

from yieldops.config import ProductConfig
from yieldops.curated.identity import measurement_column

RESULT_RECORDS = ("PTR", "MPR", "FTR")
# The columns the measurements frame is derived from; without them it is not built
# (the tables' own suites report the missing columns).
MEASUREMENT_INPUTS = {
    "tests": ("test_id", "test_num", "record", "test_name", "pins"),
    "parts": ("part_index", "hard_bin"),
    "results": ("part_index", "test_id", "record", "pin", "result", "passed"),
}


@dataclass(frozen=True)
class Measurement:
    """One column of the measurements frame."""

    test_id: str
    test_num: int
    test_name: str
    record: str  # PTR, MPR or FTR
    pin: int | None = None  # MPR: the pin's PMR index

    @property
    def column(self) -> str:
        return measurement_column(self.test_id, self.pin)

    @property
    def parametric(self) -> bool:
        return self.record != "FTR"


def measurements(tests: pa.Table) -> list[Measurement]:
    """The measurements a file defines: every test with a PTR, MPR or FTR, MPRs per pin.

    Tests known only from a summary record (TSR) have no results to check.
    """
    if not _has(tests, MEASUREMENT_INPUTS["tests"]):
        return []
    found = []
    for test in tests.select(list(MEASUREMENT_INPUTS["tests"])).to_pylist():
        if test["record"] not in RESULT_RECORDS:
            continue
        pins = test["pins"] if test["record"] == "MPR" else [None]
        found += [
            Measurement(
                test["test_id"], test["test_num"], test["test_name"] or "", test["record"], pin
            )
            for pin in pins or []
        ]
    return found


def validation_frames(
    tables: Mapping[str, pa.Table], product: ProductConfig
) -> dict[str, pd.DataFrame]:
    """The frames to validate, by name; the measurements' only when their inputs are complete."""
    frames = {name: tables[name].to_pandas() for name in ("lots", "tests", "results")}
    frames["parts"] = parts_frame(tables["parts"], product)
    if all(_has(tables[name], columns) for name, columns in MEASUREMENT_INPUTS.items()):
        measured = measurements(tables["tests"])
        values = measurement_values(
            tables["results"],
            frames["parts"],
            measured,
            keep="first" if product.repeats.tests == "first" else "last",
        )
        frames["measurements"] = measurements_frame(values, frames["parts"], measured, product)
    return frames


def parts_frame(parts: pa.Table, product: ProductConfig) -> pd.DataFrame:
    """The parts table with the die's ``radius`` and ``good``, where their inputs exist."""
    frame = parts.to_pandas()
    if product.wafer is not None and _has(parts, ("x", "y")):
        center_x, center_y = product.wafer.center
        frame["radius"] = np.hypot(frame["x"] - center_x, frame["y"] - center_y)
    if _has(parts, ("hard_bin",)):
        frame["good"] = frame["hard_bin"].isin(product.bins.good)
    return frame


def measurement_values(
    results: pa.Table, parts: pd.DataFrame, measured: Iterable[Measurement], keep: str = "last"
) -> pd.DataFrame:
    """One row per part of ``parts`` and measurement it has a result row for: ``part_index``,
    ``good``, ``measurement`` (its column name) and ``value`` (null: the row has none). A
    test repeated on a part gives its ``keep`` (last or first) result."""
    measured = list(measured)
    columns = pd.DataFrame(
        {
            "test_id": pd.Series([m.test_id for m in measured], dtype=object),
            "pin": pd.array([m.pin for m in measured], dtype="Float64"),
            "measurement": [m.column for m in measured],
        }
    )
    rows = results.select(list(MEASUREMENT_INPUTS["results"])).to_pandas()
    rows["test_id"] = rows["test_id"].astype(str).astype(object)
    rows["pin"] = rows["pin"].astype("Float64")
    ftr = rows["record"] == "FTR"
    rows["value"] = rows["result"].where(~ftr, _as_float(rows["passed"])).astype("float64")
    found = rows.merge(columns, on=["test_id", "pin"]).drop_duplicates(
        ["part_index", "measurement"], keep=keep
    )
    return found[["part_index", "measurement", "value"]].merge(
        parts[["part_index", "good"]], on="part_index"
    )


def measurements_frame(
    values: pd.DataFrame,
    parts: pd.DataFrame,
    measured: Iterable[Measurement],
    product: ProductConfig,
) -> pd.DataFrame:
    """One row per measurement: its rules beside what ``values`` (``measurement_values``)
    show of it. Missing results count on the good dies only: a stop-on-fail flow skips the
    rest of the flow on a failing die, while a good die ran the whole flow in any flow;
    with no good die, the rate is null (not judged)."""
    rules = _rules(measured, product)
    found = values[values["value"].notna()]
    low, high = (found["measurement"].map(rules[b]).astype("float64") for b in ("low", "high"))
    found = found.assign(below=found["value"] < low, above=found["value"] > high)
    stats = found.groupby("measurement").agg(
        results=("value", "size"),
        min=("value", "min"),
        max=("value", "max"),
        below=("below", "sum"),
        above=("above", "sum"),
    )
    frame = pd.concat([rules, stats.reindex(rules.index)], axis=1)  # also when none found
    counts = ["results", "below", "above"]
    frame[counts] = frame[counts].fillna(0).astype(int)
    good_dies = int(parts["good"].sum())
    with_result = found[found["good"].astype(bool)].groupby("measurement").size()
    frame["good_dies"] = good_dies
    frame["missing"] = good_dies - with_result.reindex(frame.index, fill_value=0)
    frame["missing_rate"] = frame["missing"] / good_dies if good_dies else np.nan
    return frame.reset_index()


def _rules(measured: Iterable[Measurement], product: ProductConfig) -> pd.DataFrame:
    """Per measurement (the index): the test's name, its physical bounds (none for a
    functional test: pass/fail) and the share of good dies allowed to lack a result."""
    rules = []
    for m in measured:
        low, high = (
            product.validation.bounds(m.test_num, m.test_id) if m.parametric else (None, None)
        )
        allowed = product.validation.missing_rate(m.test_num, m.test_id)
        rules.append((m.column, m.test_name, low, high, allowed))
    columns = ["measurement", "test_name", "low", "high", "allowed_missing_rate"]
    frame = pd.DataFrame(rules, columns=columns).astype({"low": float, "high": float})
    # A test id defined twice is the tests suite's to report; here it is one measurement.
    return frame.drop_duplicates("measurement").set_index("measurement")


def _as_float(passed: pd.Series) -> pd.Series:
    """True/False as 1.0/0.0; null (no pass/fail indication) stays null."""
    return passed.map({True: 1.0, False: 0.0})


def _has(table: pa.Table, columns: Iterable[str]) -> bool:
    return set(columns) <= set(table.column_names)
