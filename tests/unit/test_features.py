"""The per-die feature table, built from real curated Parquet of the synthetic fab."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from yieldops.config import ConfigError, ProductConfig, load_product, product
from yieldops.curated.dataset import write_file_tables
from yieldops.curated.identity import make_test_id
from yieldops.features import (
    KEY_COLUMNS,
    FeatureTable,
    NotEnoughData,
    build_feature_table,
    die_labels,
    feature_matrix,
    file_features,
    split_by_lot,
    split_for_training,
)
from yieldops.stdf import read_tables
from yieldops.synth import PRODUCTS, synthesize

ADC = product("YO-7NM-ADC")


def column(product_name: str, test_num: int) -> str:
    """The feature column of a synthetic product's test (its number and name)."""
    (test,) = [t for t in PRODUCTS[product_name].tests if t.test_num == test_num]
    return make_test_id("PTR", test_num, test.name)


ADC_FEATURES = [column(ADC.name, n) for n in range(1000, 1007)] + ["x", "y", "radius", "site"]
RO_FREQ = column(ADC.name, 1003)
# Lot ids whose alphabetical order is not their time order: only start times may order lots.
RENAMED = {"S0-L001": "LOT-D", "S0-L002": "LOT-B", "S0-L003": "LOT-C", "S0-L004": "LOT-A"}


def renamed_lot(tables: dict[str, pa.Table], lot_id: str) -> dict[str, pa.Table]:
    out = dict(tables)
    for name in ("lots", "parts"):
        table = tables[name]
        column = pa.array([lot_id] * table.num_rows, pa.string())
        out[name] = table.set_column(table.schema.get_field_index("lot_id"), "lot_id", column)
    return out


def curate(
    root: Path, product_name: str, lots: int, seed: int = 0, rename: dict | None = None
) -> dict[str, dict[str, pa.Table]]:
    """Synthetic lots (one wafer each) decoded and written as curated Parquet, as ingest
    does; returns each file's decoded tables by its (fake) sha256."""
    decoded = {}
    paths = synthesize(
        root / "landing",
        lots=lots,
        wafers_per_lot=1,
        seed=seed,
        drift=0.3,
        product=PRODUCTS[product_name],
    )
    for path in paths:
        tables = read_tables(path)
        lot_id = tables["lots"]["lot_id"][0].as_py()
        if rename:
            lot_id = rename[lot_id]
            tables = renamed_lot(tables, lot_id)
        sha = hashlib.sha256(str(path).encode()).hexdigest()
        write_file_tables(tables, root / "curated", product_name, lot_id, sha)
        decoded[sha] = tables
    return decoded


@pytest.fixture(scope="module")
def adc(tmp_path_factory) -> tuple[Path, dict[str, dict[str, pa.Table]]]:
    root = tmp_path_factory.mktemp("features")
    decoded = curate(root, "YO-7NM-ADC", lots=4, rename=RENAMED)
    return root / "curated", decoded


@pytest.fixture(scope="module")
def table(adc) -> FeatureTable:
    return build_feature_table(adc[0], ADC)


def with_features(config: ProductConfig, **features) -> ProductConfig:
    return config.model_copy(update={"features": config.features.model_copy(update=features)})


def test_one_row_per_die_with_the_configured_columns(adc, table: FeatureTable) -> None:
    _, decoded = adc
    frame = table.frame
    assert len(frame) == sum(t["parts"].num_rows for t in decoded.values()) == 4 * 1185
    assert not frame.duplicated(["file", "part_index"]).any()
    assert table.feature_columns == ADC_FEATURES
    assert not {c for c in frame.columns if c.split("_")[0] in map(str, ADC.label_tests)}
    assert list(frame.columns[: len(KEY_COLUMNS)]) == KEY_COLUMNS
    assert frame[ADC_FEATURES].notna().all().all()  # full datalog: every die has every monitor
    assert set(frame["good"].unique()) == {0, 1}
    assert (frame["good"] == frame["hard_bin"].isin(ADC.bins.good)).all()
    assert np.allclose(frame["radius"], np.hypot(frame["x"], frame["y"]))


def test_values_are_the_die_s_own_ptr_results(adc, table: FeatureTable) -> None:
    _, decoded = adc
    sha, tables = next(iter(decoded.items()))
    results = tables["results"].to_pandas()
    ptr = results[(results["record"] == "PTR") & (results["test_num"] == 1003)]
    expected = ptr.set_index("part_index")["result"].astype("float64")
    rows = table.frame[table.frame["file"] == sha].set_index("part_index")
    assert len(rows) == tables["parts"].num_rows
    pd.testing.assert_series_equal(
        rows[RO_FREQ].sort_index(), expected.sort_index(), check_names=False
    )
    parts = tables["parts"].to_pandas().set_index("part_index").sort_index()
    assert (rows.sort_index()[["x", "y", "site"]] == parts[["x", "y", "site"]]).all().all()


def test_lots_are_in_start_time_order_not_by_name(table: FeatureTable) -> None:
    # LOT-D was tested first, LOT-A last.
    assert table.lots == ["LOT-D", "LOT-B", "LOT-C", "LOT-A"]
    starts = [table.lot_starts[lot] for lot in table.lots]
    assert starts == sorted(starts)
    assert list(pd.unique(table.frame["lot_id"])) == table.lots
    assert [e["lot_id"] for e in table.lineage()] == table.lots
    assert sum(e["dies"] for e in table.lineage()) == table.n_dies


def test_column_order_is_stable(adc, table: FeatureTable) -> None:
    again = build_feature_table(adc[0], ADC)
    assert again.feature_columns == table.feature_columns
    pd.testing.assert_frame_equal(again.frame, table.frame)

    chosen = build_feature_table(
        adc[0], with_features(ADC, tests=[1003, 1000], include_position=False)
    )
    assert chosen.feature_columns == [RO_FREQ, ADC_FEATURES[0], "site"]
    by_id = build_feature_table(adc[0], with_features(ADC, tests=[RO_FREQ], include_site=False))
    assert by_id.feature_columns == [RO_FREQ, "x", "y", "radius"]
    only_tests = build_feature_table(adc[0], with_features(ADC, include_site=False))
    assert only_tests.feature_columns == ADC_FEATURES[:-1]


def test_label_tests_cannot_be_features(tmp_path: Path) -> None:
    path = tmp_path / "leak.yaml"
    path.write_text(
        "name: X\nbins: {good: [1], declared: [1, 2]}\nwafer: {radius_dies: 5}\n"
        "label_tests: [2000]\nfeatures: {tests: [1000, 2000]}\n"
    )
    with pytest.raises(ConfigError, match=r"features.tests \[2000\] are label_tests"):
        load_product(path)


def test_a_configured_test_without_results_is_an_error(adc) -> None:
    with pytest.raises(ValueError, match=r"features.tests \[1999\] have no parametric results"):
        build_feature_table(adc[0], with_features(ADC, tests=[1000, 1999]))


def test_split_by_time_never_mixes_lots(table: FeatureTable) -> None:
    train, holdout = split_by_lot(table, holdout_lots=1)
    assert train.lots == ["LOT-D", "LOT-B", "LOT-C"] and holdout.lots == ["LOT-A"]
    assert set(train.frame["lot_id"]) == set(train.lots)
    assert set(holdout.frame["lot_id"]) == set(holdout.lots)
    assert len(train.frame) + len(holdout.frame) == len(table.frame)
    assert max(train.lot_starts.values()) < min(holdout.lot_starts.values())
    assert train.feature_columns == holdout.feature_columns == table.feature_columns

    train, holdout = split_by_lot(table, holdout_lots=2, train_lots=1)
    assert train.lots == ["LOT-B"] and holdout.lots == ["LOT-C", "LOT-A"]
    with pytest.raises(ValueError, match="cannot give 4 holdout lot"):
        split_by_lot(table, holdout_lots=4)


def test_features_of_one_decoded_file_match_the_table(adc, table: FeatureTable) -> None:
    _, decoded = adc
    sha, tables = list(decoded.items())[2]
    rows = file_features(tables, table.feature_columns, ADC, file=sha)
    expected = table.frame[table.frame["file"] == sha].reset_index(drop=True)
    assert list(rows.columns) == list(expected.columns)
    pd.testing.assert_frame_equal(
        feature_matrix(rows, table.feature_columns),
        feature_matrix(expected, table.feature_columns),
    )
    assert (rows["good"].to_numpy() == expected["good"].to_numpy()).all()


def repeated_on_part_0(tables: dict[str, pa.Table]) -> dict[str, pa.Table]:
    """The file as if the tester ran test 1000 again on part 0 (a loop), reading 123.5."""
    results = tables["results"]
    first = results.filter(
        pc.and_(pc.equal(results["part_index"], 0), pc.equal(results["test_num"], 1000))
    )
    again = first.set_column(
        first.schema.get_field_index("result"), "result", pa.array([123.5], pa.float32())
    )
    return {**tables, "results": pa.concat_tables([results, again])}


def test_missing_tests_are_nan_and_the_last_repeat_counts(adc) -> None:
    _, decoded = adc
    tables = repeated_on_part_0(next(iter(decoded.values())))
    contact = ADC_FEATURES[0]
    columns = [contact, "9999_NEVER_RUN", "site"]

    rows = file_features(tables, columns, ADC)

    assert rows.loc[rows["part_index"] == 0, contact].item() == 123.5
    assert rows.loc[rows["part_index"] == 1, contact].item() != 123.5
    assert rows["9999_NEVER_RUN"].isna().all()
    assert rows["file"].isna().all()
    matrix = feature_matrix(rows, [*columns, "radius"])
    assert list(matrix.columns) == [*columns, "radius"]
    assert (matrix.dtypes == "float64").all()
    with pytest.raises(ValueError, match="unknown feature column 'colour'"):
        file_features(tables, ["colour"], ADC)


def test_repeated_tests_follow_the_declared_rule(adc) -> None:
    _, decoded = adc
    tables = repeated_on_part_0(next(iter(decoded.values())))
    contact = ADC_FEATURES[0]
    original = tables["results"].filter(pc.equal(tables["results"]["test_num"], 1000))
    first_value = original["result"][0].as_py()

    def part_0(rule: str, columns: list[str]) -> pd.Series:
        config = ADC.model_copy(update={"repeats": ADC.repeats.model_copy(update={"tests": rule})})
        rows = file_features(tables, columns, config)
        return rows.loc[rows["part_index"] == 0, columns].iloc[0]

    assert part_0("first", [contact]).item() == pytest.approx(first_value)
    both = part_0("all", [contact, f"{contact}.r2"])
    assert both.tolist() == [pytest.approx(first_value), 123.5]


def test_stop_on_fail_flow_keeps_every_die(tmp_path: Path) -> None:
    """PMIC dies failing continuity skip the monitors: they stay, with NaN features."""
    pmic = product("YO-28NM-PMIC")
    curate(tmp_path, "YO-28NM-PMIC", lots=1)
    table = build_feature_table(tmp_path / "curated", pmic)
    monitors = [column(pmic.name, n) for n in (1000, 1001, 1002)]
    assert table.feature_columns == [*monitors, *ADC_FEATURES[-4:]]
    skipped = table.frame[monitors[0]].isna()
    assert skipped.any() and (table.frame.loc[skipped, "good"] == 0).all()


def test_few_lots_hold_out_the_newest_wafers_never_splitting_one(tmp_path: Path) -> None:
    curate(tmp_path, "YO-7NM-ADC", lots=1)  # one lot ...
    (path,) = synthesize(
        tmp_path / "two", lots=1, wafers_per_lot=2, seed=5, product=PRODUCTS[ADC.name]
    )
    tables = read_tables(path)
    write_file_tables(tables, tmp_path / "two-wafers", ADC.name, "L2", "f" * 64)

    single = build_feature_table(tmp_path / "curated", ADC)
    with pytest.raises(NotEnoughData, match=r"not enough data: 1 lot\(s\) cannot give 1 holdout"):
        split_for_training(single, holdout_lots=1)

    table = build_feature_table(tmp_path / "two-wafers", ADC)  # ... of two wafers
    split = split_for_training(table, holdout_lots=1)
    assert split.by == "wafers"
    (newest,) = split.holdout.frame["wafer_id"].unique()
    assert newest == table.frame["wafer_id"].iloc[-1]  # the wafer tested last
    assert newest not in set(split.train.frame["wafer_id"])
    assert split.train.n_dies + split.holdout.n_dies == table.n_dies
    assert split.note.startswith("1 lot(s) cannot give 1 holdout lot(s) and a training lot: ")
    assert "held out the newest 1 of 2 wafers" in split.note


def test_final_test_holds_out_the_newest_parts(tmp_path: Path) -> None:
    curate(tmp_path, "YO-7NM-ADC", lots=1)
    table = build_feature_table(tmp_path / "curated", ADC)
    final_test = table.rows(np.ones(table.n_dies, dtype=bool))
    final_test.frame["wafer_id"] = None  # no WIR/WRR: the parts of a handler lot
    split = split_for_training(final_test, holdout_lots=1)
    assert split.by == "parts"
    assert split.holdout.frame["part_index"].min() > split.train.frame["part_index"].max()
    assert split.holdout.n_dies == pytest.approx(0.25 * table.n_dies, abs=1)


def test_a_training_set_of_one_class_is_not_enough_data(table: FeatureTable) -> None:
    good = table.rows((table.frame["good"] == 1).to_numpy())
    with pytest.raises(NotEnoughData, match=r"training dies are all good .*held out the newest"):
        split_for_training(good, holdout_lots=1)
    assert split_for_training(table, holdout_lots=1).by == "lots"


def test_a_retested_die_counts_once_by_the_declared_rule(adc) -> None:
    _, decoded = adc
    tables = next(iter(decoded.values()))
    parts = tables["parts"]
    retest = parts.slice(0, 1)  # die 0 tested again at the end of the wafer: now bin 1
    retest = retest.set_column(0, "part_index", pa.array([parts.num_rows], pa.int32()))
    retest = retest.set_column(
        retest.schema.get_field_index("hard_bin"), "hard_bin", pa.array([1], pa.uint16())
    )
    tables = {**tables, "parts": pa.concat_tables([parts, retest])}
    die = (parts["x"][0].as_py(), parts["y"][0].as_py())

    def rows_of_die(rule: str) -> pd.DataFrame:
        config = ADC.model_copy(update={"repeats": ADC.repeats.model_copy(update={"dies": rule})})
        rows = file_features(tables, ["site"], config)
        return rows[(rows["x"] == die[0]) & (rows["y"] == die[1])]

    assert rows_of_die("last")["part_index"].tolist() == [parts.num_rows]
    assert rows_of_die("last")["good"].tolist() == [1]
    assert rows_of_die("first")["part_index"].tolist() == [0]
    assert rows_of_die("all")["part_index"].tolist() == [0, parts.num_rows]


def test_wafers_without_an_id_stay_apart(tmp_path: Path) -> None:
    """Advantest SmarTest writes WAFER_ID empty: two wafers of a file are still two."""
    (path,) = synthesize(tmp_path, lots=1, wafers_per_lot=2, seed=0, tester_style="smartest")
    tables = read_tables(path)
    assert set(tables["wafers"]["wafer_id"].to_pylist()) == {""}
    config = ADC.model_copy(update={"name": "RFT", "features": ADC.features.model_copy(
        update={"tests": None})})  # fmt: skip
    write_file_tables(tables, tmp_path / "curated", "RFT", "L", "e" * 64)
    table = build_feature_table(tmp_path / "curated", config)
    assert table.n_dies == tables["parts"].num_rows
    assert sorted(table.frame["wafer_id"].unique()) == ["#1", "#2"]
    labels = die_labels(tmp_path / "curated", config, table.lots)
    assert len(labels) == table.n_dies  # the gateway's die keys find their labels
