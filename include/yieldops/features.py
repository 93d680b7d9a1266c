"""The per-die feature table: what the yield model learns from and what it is scored on.

One row per part (die) of the curated dataset. The product YAML decides the columns
(``features``): parametric test results as ``test_<num>`` (the last result when a test
repeats on a die), die position (``x``, ``y``, ``radius`` from the wafer centre, in dies)
and the tester ``site``. The label ``good`` is 1 when the die's hard bin is one of the
product's good bins. Tests that decide the bin (``label_tests``) are never features.

>>> table = build_feature_table(curated_dir, product("YO-7NM-ADC"))  # doctest: +SKIP
>>> train, holdout = split_by_lot(table, holdout_lots=1)  # doctest: +SKIP
>>> X = feature_matrix(holdout.frame, table.feature_columns)  # doctest: +SKIP

New data (one decoded file, e.g. at the prediction gateway or in an offline check) gets
the same columns from :func:`file_features`; a test it lacks is NaN.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from .config import ProductConfig

KEY_COLUMNS = ["product", "lot_id", "wafer_id", "file", "part_index", "x", "y", "site"]
OUTCOME_COLUMNS = ["hard_bin"]  # kept beside the label for wafer maps of actual bins
LABEL = "good"
POSITION_COLUMNS = ["x", "y", "radius"]
SITE_COLUMN = "site"
_TEST_COLUMN = re.compile(r"^test_(\d+)$")


def test_column(test_num: int) -> str:
    return f"test_{test_num}"


@dataclass(frozen=True)
class FeatureTable:
    """Feature rows of one product, with the column order and the lots in time order.

    ``frame`` holds the key columns, the feature columns and the label, one row per die,
    oldest lot first. ``lots`` is oldest first (by MIR start time); ``lot_starts`` holds
    each lot's start time (UTC, NaT when no MIR was curated).
    """

    product: str
    frame: pd.DataFrame
    feature_columns: list[str]
    lots: list[str]
    lot_starts: dict[str, pd.Timestamp] = field(default_factory=dict)
    label: str = LABEL

    @property
    def n_dies(self) -> int:
        return len(self.frame)

    def X(self) -> pd.DataFrame:
        return feature_matrix(self.frame, self.feature_columns)

    def y(self) -> np.ndarray:
        return self.frame[self.label].to_numpy()

    def lineage(self) -> list[dict]:
        """What the table was built from: one entry per source file, oldest lot first."""
        grouped = (
            self.frame.groupby(["lot_id", "file"], sort=False, observed=True)[self.label]
            .agg(["size", "sum"])
            .reset_index()
        )
        return [
            {
                "product": self.product,
                "lot_id": row.lot_id,
                "file": row.file,
                "lot_start": _iso(self.lot_starts.get(row.lot_id)),
                "dies": int(row.size),
                "good": int(row.sum),
            }
            for row in grouped.itertuples(index=False)
        ]

    def subset(self, lots: Sequence[str]) -> FeatureTable:
        """The rows of these lots (kept in time order)."""
        wanted = set(lots)
        chosen = [lot for lot in self.lots if lot in wanted]
        frame = self.frame[self.frame["lot_id"].isin(chosen)].reset_index(drop=True)
        return FeatureTable(
            product=self.product,
            frame=frame,
            feature_columns=list(self.feature_columns),
            lots=chosen,
            lot_starts={lot: self.lot_starts[lot] for lot in chosen if lot in self.lot_starts},
            label=self.label,
        )


def _iso(moment: pd.Timestamp | None) -> str | None:
    return None if moment is None or pd.isna(moment) else moment.isoformat()


def die_key(lot_id: object, wafer_id: object, x: object, y: object) -> str:
    """``lot:wafer:x:y``: how the gateway names a die and how its label is found later."""
    return ":".join(_key_part(v) for v in (lot_id, wafer_id, x, y))


def _key_part(value: object) -> str:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value)


def die_labels(curated_dir: str | Path, config: ProductConfig, lots: Sequence[str]) -> pd.Series:
    """``good`` (1/0) of every curated die of these lots, indexed by :func:`die_key`.

    A die tested twice (a retest file) keeps its newest label."""
    from .curated.dataset import read_table

    parts = read_table(Path(curated_dir), "parts", config.name)
    parts = parts.filter(pc.is_in(parts["lot_id"], pa.array(list(lots), pa.string())))
    frame = parts.select(["lot_id", "wafer_id", "x", "y", "hard_bin"]).to_pandas()
    keys = [die_key(*row) for row in frame[["lot_id", "wafer_id", "x", "y"]].itertuples(False)]
    good = frame["hard_bin"].isin(config.bins.good).astype("int64").to_numpy()
    labels = pd.Series(good, index=pd.Index(keys, name="die_key"), name=LABEL)
    return labels[~labels.index.duplicated(keep="last")]


def feature_columns_for(config: ProductConfig, available_tests: Sequence[int]) -> list[str]:
    """The feature columns, in their fixed order: tests (configured order, or ascending test
    number when every available PTR test is used), then x, y, radius, then site."""
    label_tests = set(config.label_tests)
    if config.features.tests is None:
        tests = sorted({int(t) for t in available_tests} - label_tests)
    else:
        tests = list(config.features.tests)
    columns = [test_column(t) for t in tests]
    if config.features.include_position:
        columns += POSITION_COLUMNS
    if config.features.include_site:
        columns.append(SITE_COLUMN)
    if not columns:
        raise ValueError(f"{config.name}: no feature columns (no parametric tests in the data?)")
    return columns


def tests_of(feature_columns: Sequence[str]) -> list[int]:
    """Test numbers behind the ``test_<num>`` columns; ValueError on a column we cannot make."""
    tests = []
    for column in feature_columns:
        match = _TEST_COLUMN.match(column)
        if match:
            tests.append(int(match[1]))
        elif column not in (*POSITION_COLUMNS, SITE_COLUMN):
            raise ValueError(f"unknown feature column {column!r}")
    return tests


def build_feature_table(curated_dir: str | Path, config: ProductConfig) -> FeatureTable:
    """One row per die of the product's curated data, oldest lot first."""
    from .curated.dataset import read_table

    root = Path(curated_dir)
    results = _ptr_results(read_table(root, "results", config.name))
    parts = read_table(root, "parts", config.name).to_pandas()
    if parts.empty:
        raise ValueError(f"{config.name}: no curated parts under {root}")
    available = pd.unique(results["test_num"]).tolist()
    columns = feature_columns_for(config, available)
    configured = config.features.tests or []
    absent = sorted(set(configured) - set(available))
    if absent:
        raise ValueError(
            f"{config.name}: features.tests {absent} have no PTR results in {root} "
            f"(PTR tests there: {sorted(available)})"
        )
    frame = _assemble(parts, results, columns, config)

    lots = read_table(root, "lots", config.name).to_pandas()
    starts = lots.groupby("lot_id")["start_time"].min()
    lot_ids = pd.unique(frame["lot_id"]).tolist()
    order = (
        pd.DataFrame({"lot_id": lot_ids, "start": starts.reindex(lot_ids).to_numpy()})
        .sort_values(["start", "lot_id"], na_position="last", kind="stable")["lot_id"]
        .tolist()
    )
    rank = {lot: i for i, lot in enumerate(order)}
    frame = (
        frame.assign(_rank=frame["lot_id"].map(rank))
        .sort_values(["_rank", "file", "part_index"], kind="stable")
        .drop(columns="_rank")
        .reset_index(drop=True)
    )
    return FeatureTable(
        product=config.name,
        frame=frame,
        feature_columns=columns,
        lots=order,
        lot_starts={lot: starts[lot] for lot in order if lot in starts.index},
    )


def split_by_lot(
    table: FeatureTable, holdout_lots: int = 1, train_lots: int | None = None
) -> tuple[FeatureTable, FeatureTable]:
    """(train, holdout): the newest ``holdout_lots`` lots are held out; the training set is
    the lots before them (at most ``train_lots`` of the newest). A lot is never split."""
    if holdout_lots < 1:
        raise ValueError("holdout_lots must be at least 1")
    if len(table.lots) <= holdout_lots:
        raise ValueError(
            f"{table.product}: {len(table.lots)} lot(s) ({', '.join(table.lots)}) cannot give "
            f"{holdout_lots} holdout lot(s) and at least one training lot"
        )
    older = table.lots[:-holdout_lots]
    if train_lots is not None:
        older = older[-train_lots:]
    return table.subset(older), table.subset(table.lots[-holdout_lots:])


def file_features(
    tables: Mapping[str, pa.Table],
    feature_columns: Sequence[str],
    config: ProductConfig,
    file: str | None = None,
) -> pd.DataFrame:
    """Feature rows (keys, ``feature_columns`` in that order, label) of one decoded file,
    e.g. the dict from :func:`yieldops.stdf.read_tables`. Tests the file lacks are NaN."""
    placeholder = file if file is not None else ""
    parts = tables["parts"].to_pandas().assign(product=config.name, file=placeholder)
    results = _ptr_results(tables["results"]).assign(file=placeholder)
    frame = _assemble(parts, results, list(feature_columns), config)
    if file is None:
        frame["file"] = None
    return frame


def feature_matrix(frame: pd.DataFrame, feature_columns: Sequence[str]) -> pd.DataFrame:
    """The model input: exactly these columns, in this order, as float64; absent ones NaN."""
    return frame.reindex(columns=list(feature_columns)).astype("float64")


def _ptr_results(results: pa.Table) -> pd.DataFrame:
    """PTR results as (file, part_index, test_num, result), in record order."""
    keep = [c for c in ("file", "part_index", "test_num", "result") if c in results.column_names]
    ptr = results.filter(pc.equal(results["record"].cast(pa.string()), "PTR")).select(keep)
    return ptr.to_pandas()


def _assemble(
    parts: pd.DataFrame, results: pd.DataFrame, columns: list[str], config: ProductConfig
) -> pd.DataFrame:
    """Key columns, feature columns and label, one row per part."""
    tests = tests_of(columns)
    frame = parts[KEY_COLUMNS + OUTCOME_COLUMNS].reset_index(drop=True)
    if tests:
        wanted = results[results["test_num"].isin(tests)]
        # Several results of a test on a die: the last (a retest within the flow) counts.
        wanted = wanted.drop_duplicates(["file", "part_index", "test_num"], keep="last")
        wide = wanted.pivot(index=["file", "part_index"], columns="test_num", values="result")
        wide = wide.reindex(columns=tests)
        wide.columns = [test_column(t) for t in tests]
        frame = frame.merge(
            wide.astype("float64"), left_on=["file", "part_index"], right_index=True, how="left"
        )
    if "radius" in columns:
        cx, cy = config.wafer.center
        frame["radius"] = np.hypot(
            frame["x"].astype("float64") - cx, frame["y"].astype("float64") - cy
        )
    frame[LABEL] = frame["hard_bin"].isin(config.bins.good).astype("int64")
    order = KEY_COLUMNS + [c for c in columns if c not in KEY_COLUMNS] + OUTCOME_COLUMNS + [LABEL]
    return frame[order]
