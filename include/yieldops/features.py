"""The per-die feature table: what the yield model learns from and what it is scored on.

One row per die of the curated dataset. The product YAML decides the columns
(``features``): every parametric measurement (a PTR result, each pin of an MPR) named by
its test (``curated.identity``: number and name, e.g. ``1003_RO_FREQ``, ``1200_CONT.pin3``),
die position (``x``, ``y``, ``radius`` from the wafer centre, in dies) and the tester
``site``. The label ``good`` is 1 when the die's hard bin is one of the product's good
bins. Tests that decide the bin (``label_tests``) are never features.

Measurements are never dropped by accident: ``repeats.tests`` says which result of a test
run more than once on a part counts (last, first, or all as ``.r2``, ``.r3`` columns), and
``repeats.dies`` which part of a die tested again counts (last, first or all).

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
from .curated.identity import measurement_column, refers_to

KEY_COLUMNS = ["product", "lot_id", "wafer_id", "file", "part_index", "x", "y", "site"]
OUTCOME_COLUMNS = ["hard_bin"]  # kept beside the label for wafer maps of actual bins
LABEL = "good"
POSITION_COLUMNS = ["x", "y", "radius"]
SITE_COLUMN = "site"
PARAMETRIC = ("PTR", "MPR")  # records whose results are measurements (FTR: pass/fail only)
# <test id>[.pin<k>][.r<n>]: a test id never holds a dot (curated.identity)
_MEASUREMENT_COLUMN = re.compile(
    r"^(?P<test_id>\d+(_\w+)?)(\.pin(?P<pin>\d+))?(\.r(?P<rep>\d+))?$", re.ASCII
)


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
        return self.rows(self.frame["lot_id"].isin(set(lots)).to_numpy())

    def rows(self, mask: np.ndarray) -> FeatureTable:
        """The rows where ``mask`` is true, and the lots they belong to (in time order)."""
        frame = self.frame[mask].reset_index(drop=True)
        present = set(frame["lot_id"])
        chosen = [lot for lot in self.lots if lot in present]
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
    frame = with_wafer_names(
        parts.select(["lot_id", "wafer_index", "wafer_id", "x", "y", "hard_bin"]).to_pandas()
    )
    keys = [die_key(*row) for row in frame[["lot_id", "wafer_id", "x", "y"]].itertuples(False)]
    good = frame["hard_bin"].isin(config.bins.good).astype("int64").to_numpy()
    labels = pd.Series(good, index=pd.Index(keys, name="die_key"), name=LABEL)
    return labels[~labels.index.duplicated(keep="last")]


def feature_columns_for(config: ProductConfig, available: pd.DataFrame) -> list[str]:
    """The feature columns, in their fixed order: measurements (those of the configured tests
    in their order, or every available one but the label and excluded tests, by test
    number), then x, y, radius, then site. ``available`` is :func:`measurement_catalog`."""
    if config.features.tests is None:
        usable = [
            config.is_feature_test(n, t)
            for n, t in zip(available["test_num"], available["test_id"])
        ]
        columns = available.loc[np.array(usable, dtype=bool), "column"].tolist()
    else:
        columns = []
        for ref in config.features.tests:
            named = [
                refers_to(ref, n, t) for n, t in zip(available["test_num"], available["test_id"])
            ]
            columns += available.loc[np.array(named, dtype=bool), "column"].tolist()
    if config.features.include_position:
        columns += POSITION_COLUMNS
    if config.features.include_site:
        columns.append(SITE_COLUMN)
    if not columns:
        raise ValueError(f"{config.name}: no feature columns (no parametric tests in the data?)")
    return columns


def parse_measurement(column: str) -> tuple[str, int | None, int]:
    """(test id, pin or None, repetition) of a measurement column; ValueError otherwise."""
    match = _MEASUREMENT_COLUMN.match(column)
    if match is None or column in (*POSITION_COLUMNS, SITE_COLUMN):
        raise ValueError(f"unknown feature column {column!r}")
    pin, rep = match["pin"], match["rep"]
    return match["test_id"], None if pin is None else int(pin), 1 if rep is None else int(rep)


def _check_columns(columns: Sequence[str]) -> None:
    for column in columns:
        if column not in (*POSITION_COLUMNS, SITE_COLUMN):
            parse_measurement(column)


def build_feature_table(curated_dir: str | Path, config: ProductConfig) -> FeatureTable:
    """One row per die of the product's curated data, oldest lot first."""
    from .curated.dataset import read_table

    root = Path(curated_dir)
    parts = read_table(root, "parts", config.name).to_pandas()
    if parts.empty:
        raise ValueError(f"{config.name}: no curated parts under {root}")
    lots = read_table(root, "lots", config.name).to_pandas()
    measurements = measurement_rows(read_table(root, "results", config.name), config)
    available = measurement_catalog(measurements)
    _check_configured_tests(config, available, root)
    columns = feature_columns_for(config, available)
    parts = one_part_per_die(with_wafer_names(parts), config.repeats.dies, _file_starts(lots))
    frame = _assemble(parts, measurements, columns, config)

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


def _check_configured_tests(config: ProductConfig, available: pd.DataFrame, root: Path) -> None:
    pairs = list(zip(available["test_num"], available["test_id"]))
    absent = [
        ref for ref in config.features.tests or [] if not any(refers_to(ref, *p) for p in pairs)
    ]
    if absent:
        known = sorted(set(available["test_id"]))
        raise ValueError(
            f"{config.name}: features.tests {absent} have no parametric results in {root} "
            f"(tests there: {', '.join(known[:20])}{' ...' if len(known) > 20 else ''})"
        )


def _file_starts(lots: pd.DataFrame) -> pd.Series:
    """Each curated file's MIR start time: retests of a die are ordered by it."""
    return lots.groupby("file", observed=True)["start_time"].min()


def with_wafer_names(parts: pd.DataFrame) -> pd.DataFrame:
    """Parts whose wafer has no id (some testers write WAFER_ID empty) named by their
    wafer's place in its file, ``#1``, ``#2`` ...: two such wafers of a lot are not one."""
    unnamed = (parts["wafer_id"].isna() | (parts["wafer_id"] == "")) & parts["wafer_index"].notna()
    if not unnamed.any():
        return parts
    place = parts.loc[unnamed, "wafer_index"].astype("int64") + 1
    return parts.assign(wafer_id=parts["wafer_id"].mask(unnamed, "#" + place.astype(str)))


def one_part_per_die(
    parts: pd.DataFrame, rule: str, file_starts: pd.Series | None = None
) -> pd.DataFrame:
    """The parts that count for each die under ``repeats.dies``: a die is its lot, wafer,
    x and y (parts without coordinates, as in final test, are each their own die); tested
    again, its ``last`` part (in test order: file start time, then part order), its
    ``first``, or ``all`` of them."""
    if rule == "all" or parts.empty:
        return parts
    starts = parts["file"].map(file_starts) if file_starts is not None else pd.NaT
    order = parts.assign(_start=starts).sort_values(
        ["_start", "file", "part_index"], kind="stable", na_position="first"
    )
    placed = order["x"].notna() & order["y"].notna()
    # A wafer without an id is known only within its file (it was named by its place there).
    unnamed = order["wafer_id"].fillna("").str.startswith("#")
    order = order.assign(_wafer=order["wafer_id"].mask(unnamed, order["file"] + order["wafer_id"]))
    die = ["lot_id", "_wafer", "x", "y"]
    repeated = placed & order.duplicated(die, keep=rule)
    return order[~repeated].drop(columns=["_start", "_wafer"]).sort_index()


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


class NotEnoughData(ValueError):
    """Too little data to train and judge a model at all: not a gate verdict."""


@dataclass(frozen=True)
class Split:
    """The training and holdout dies, and how they were chosen (for run notes and MLflow)."""

    train: FeatureTable
    holdout: FeatureTable
    by: str  # "lots", "wafers" or "parts"
    note: str


# With fewer lots than a lot holdout needs, the newest wafers holding about this share of
# the dies are held out (at least one whole wafer, and at least one left to train on).
HOLDOUT_SHARE = 0.25


def split_for_training(
    table: FeatureTable, holdout_lots: int = 1, train_lots: int | None = None
) -> Split:
    """The newest ``holdout_lots`` lots held out (:func:`split_by_lot`) when there are more
    lots than that; else the newest wafers, never splitting one; for final test (no wafer
    ids) the newest parts in test order. NotEnoughData, with the numbers, when the data
    cannot give a holdout and a training set with both good and bad dies."""
    if len(table.lots) > holdout_lots:
        train, holdout = split_by_lot(table, holdout_lots, train_lots)
        split = Split(
            train, holdout, "lots", f"held out the newest lot(s) {', '.join(holdout.lots)}"
        )
    else:
        split = _split_newest_units(table, holdout_lots)
    _enough_to_learn(split)
    return split


def _split_newest_units(table: FeatureTable, holdout_lots: int) -> Split:
    frame = table.frame
    few = f"{len(table.lots)} lot(s) cannot give {holdout_lots} holdout lot(s) and a training lot"
    if frame["wafer_id"].notna().any():
        by, units = "wafers", frame["lot_id"].astype(str) + "/" + frame["wafer_id"].astype(str)
    else:
        by, units = "parts", pd.Series(np.arange(len(frame)), index=frame.index)
    order = pd.unique(units)  # the frame is in test order: oldest lot, file and part first
    if len(order) < 2:
        where = (
            f"the {table.n_dies} dies are on one wafer (a wafer is never split)"
            if by == "wafers"
            else f"there is {table.n_dies} part"
        )
        raise NotEnoughData(f"{table.product}: not enough data: {few}, and {where}")
    sizes = units.value_counts().reindex(order).to_numpy()
    newest = np.cumsum(sizes[::-1]) >= HOLDOUT_SHARE * len(frame)
    held = order[len(order) - 1 - int(np.argmax(newest)) :]
    mask = units.isin(set(held)).to_numpy()
    note = (
        f"{few}: held out the newest {len(held)} of {len(order)} {by} "
        f"({int(mask.sum())} of {len(frame)} dies)"
    )
    return Split(table.rows(~mask), table.rows(mask), by, note)


def _enough_to_learn(split: Split) -> None:
    for name, part in (("training", split.train), ("holdout", split.holdout)):
        if part.n_dies == 0:
            raise NotEnoughData(f"{part.product}: not enough data: no {name} dies ({split.note})")
    good = int(split.train.y().sum())
    if good in (0, split.train.n_dies):
        only = "good" if good else "bad"
        raise NotEnoughData(
            f"{split.train.product}: not enough data: the {split.train.n_dies} training dies "
            f"are all {only} ({split.note}); a model needs good and bad dies to learn from"
        )


def file_features(
    tables: Mapping[str, pa.Table],
    feature_columns: Sequence[str],
    config: ProductConfig,
    file: str | None = None,
) -> pd.DataFrame:
    """Feature rows (keys, ``feature_columns`` in that order, label) of one decoded file,
    e.g. the dict from :func:`yieldops.stdf.read_tables`. Tests the file lacks are NaN."""
    _check_columns(feature_columns)
    placeholder = file if file is not None else ""
    parts = tables["parts"].to_pandas().assign(product=config.name, file=placeholder)
    parts = one_part_per_die(with_wafer_names(parts), config.repeats.dies)
    results = tables["results"].append_column(
        "file", pa.array([placeholder] * tables["results"].num_rows, pa.string())
    )
    frame = _assemble(parts, measurement_rows(results, config), list(feature_columns), config)
    if file is None:
        frame["file"] = None
    return frame


def feature_matrix(frame: pd.DataFrame, feature_columns: Sequence[str]) -> pd.DataFrame:
    """The model input: exactly these columns, in this order, as float64; absent ones NaN."""
    return frame.reindex(columns=list(feature_columns)).astype("float64")


def measurement_rows(results: pa.Table, config: ProductConfig) -> pd.DataFrame:
    """Parametric results as rows (file, part_index, test_num, test_id, pin, repetition,
    column, result) in record order, one per measurement under ``repeats.tests``."""
    keep = ["file", "part_index", "test_num", "test_id", "pin", "result"]
    parametric = pc.is_in(results["record"].cast(pa.string()), pa.array(PARAMETRIC))
    rows = results.filter(parametric).select(keep).to_pandas()
    rows["test_id"] = rows["test_id"].astype("string")
    measured = rows.groupby(["test_id", "pin"], sort=False, dropna=False).ngroup()
    names = rows.loc[~measured.duplicated(), ["test_id", "pin"]]
    base = [
        measurement_column(t, None if pd.isna(p) else int(p))
        for t, p in names.itertuples(index=False)
    ]
    rows["column"] = np.asarray(base, dtype=object)[measured.to_numpy()]
    same = ["file", "part_index", "column"]
    if config.repeats.tests == "all":
        repetition = rows.groupby(same, sort=False).cumcount().to_numpy() + 1
        again = repetition > 1
        rows.loc[again, "column"] = [
            f"{c}.r{n}" for c, n in zip(rows.loc[again, "column"], repetition[again])
        ]
        rows["repetition"] = repetition
    else:
        rows = rows.drop_duplicates(same, keep=config.repeats.tests)
        rows["repetition"] = 1
    return rows


def measurement_catalog(rows: pd.DataFrame) -> pd.DataFrame:
    """The measurement columns present (column, test_num, test_id, pin, repetition), in
    feature order: by test number, test id, pin and repetition."""
    catalog = rows.drop_duplicates("column")[["column", "test_num", "test_id", "pin", "repetition"]]
    return catalog.sort_values(
        ["test_num", "test_id", "pin", "repetition"], na_position="first", kind="stable"
    ).reset_index(drop=True)


def _assemble(
    parts: pd.DataFrame, rows: pd.DataFrame, columns: list[str], config: ProductConfig
) -> pd.DataFrame:
    """Key columns, feature columns and label, one row per part."""
    measured = [c for c in columns if c not in (*POSITION_COLUMNS, SITE_COLUMN)]
    frame = parts[KEY_COLUMNS + OUTCOME_COLUMNS].reset_index(drop=True)
    if measured:
        wanted = rows[rows["column"].isin(measured)]
        wide = wanted.pivot(index=["file", "part_index"], columns="column", values="result")
        wide = wide.reindex(columns=measured).astype("float64")
        wide.columns = list(measured)
        frame = frame.merge(wide, left_on=["file", "part_index"], right_index=True, how="left")
    if "radius" in columns:
        cx, cy = config.wafer.center if config.wafer else (0.0, 0.0)
        frame["radius"] = np.hypot(
            frame["x"].astype("float64") - cx, frame["y"].astype("float64") - cy
        )
    frame[LABEL] = frame["hard_bin"].isin(config.bins.good).astype("int64")
    order = KEY_COLUMNS + [c for c in columns if c not in KEY_COLUMNS] + OUTCOME_COLUMNS + [LABEL]
    return frame[order]
