"""The pandas frames one decoded STDF file is validated as.

Each curated table is validated as it is (its columns, keys and codes), and two
frames are derived for the rules that need them:

- ``parts`` gains ``radius`` (distance of the die from the wafer centre, in dies)
  and ``good`` (hard bin in the product's good bins);
- ``measurements`` has one row per part and one column per measurement, named as the
  model's features are (``curated.identity``): the PTR result of each parametric test,
  each pin's result of a multi-pin test (MPR, ``<test_id>.pin<k>``: a pin is a separate
  measurement with the test's physical bounds), and the pass/fail of each functional test
  (FTR, 1.0 or 0.0). A cell is null when the part has no result for it; a test repeated
  on a part counts as the product's ``repeats.tests`` says (first, else last);
- ``good_measurements``: the rows of ``measurements`` of the good dies.
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
    """The frames to validate, by name; ``measurements`` only when its inputs are complete."""
    frames = {name: tables[name].to_pandas() for name in ("lots", "tests", "results")}
    frames["parts"] = parts_frame(tables["parts"], product)
    if all(_has(tables[name], columns) for name, columns in MEASUREMENT_INPUTS.items()):
        frames["measurements"] = measurements_frame(
            tables["results"],
            frames["parts"],
            measurements(tables["tests"]),
            keep="first" if product.repeats.tests == "first" else "last",
        )
        good = frames["measurements"]["good"].astype(bool)
        frames["good_measurements"] = frames["measurements"][good].reset_index(drop=True)
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


def measurements_frame(
    results: pa.Table, parts: pd.DataFrame, measured: Iterable[Measurement], keep: str = "last"
) -> pd.DataFrame:
    """One row per part (``part_index``, ``good``), one column per measurement; a test
    repeated on a part gives its ``keep`` (last or first) result."""
    measured = list(measured)
    columns = pd.DataFrame(
        {
            "test_id": pd.Series([m.test_id for m in measured], dtype=object),
            "pin": pd.array([m.pin for m in measured], dtype="Float64"),
            "column": [m.column for m in measured],
        }
    )
    rows = results.select(list(MEASUREMENT_INPUTS["results"])).to_pandas()
    rows["test_id"] = rows["test_id"].astype(str).astype(object)
    rows["pin"] = rows["pin"].astype("Float64")
    rows["value"] = rows["result"].where(rows["record"] != "FTR", _as_float(rows["passed"]))
    wide = (
        rows.merge(columns, on=["test_id", "pin"])
        .drop_duplicates(["part_index", "column"], keep=keep)
        .pivot(index="part_index", columns="column", values="value")
        .reindex(columns=columns["column"])
    )
    return parts[["part_index", "good"]].join(wide, on="part_index")


def _as_float(passed: pd.Series) -> pd.Series:
    """True/False as 1.0/0.0; null (no pass/fail indication) stays null."""
    return passed.map({True: 1.0, False: 0.0})


def _has(table: pa.Table, columns: Iterable[str]) -> bool:
    return set(columns) <= set(table.column_names)
