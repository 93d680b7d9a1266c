"""Curated data written before test identity: refused when read, rewritten by the migration."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from yieldops.config import product
from yieldops.curated.dataset import read_table, write_file_tables
from yieldops.curated.migrate import OutdatedCuratedData, migrate, outdated_folders
from yieldops.features import build_feature_table
from yieldops.stdf import read_tables
from yieldops.synth import PRODUCTS, synthesize

ADC = product("YO-7NM-ADC")


def as_before_test_identity(folder: Path) -> None:
    """Rewrite a curated file folder as the reader wrote it before test identity: tests by
    number (the first record's definition), results and lots without the new columns."""
    tests = pq.read_table(folder / "tests.parquet")
    first_of_number = ~tests.to_pandas().duplicated("test_num").to_numpy()
    old_tests = tests.filter(pa.array(first_of_number))
    pq.write_table(old_tests.drop_columns(["test_id"]), folder / "tests.parquet")
    results = pq.read_table(folder / "results.parquet")
    pq.write_table(results.drop_columns(["test_id"]), folder / "results.parquet")
    lots = pq.read_table(folder / "lots.parquet")
    pq.write_table(lots.drop_columns(["part_type", "family"]), folder / "lots.parquet")


@pytest.fixture
def curated(tmp_path: Path) -> Path:
    root = tmp_path / "curated"
    for path in synthesize(
        tmp_path / "landing", lots=2, wafers_per_lot=1, seed=3, product=PRODUCTS[ADC.name]
    ):
        tables = read_tables(path)
        lot_id = tables["lots"]["lot_id"][0].as_py()
        write_file_tables(
            tables, root, ADC.name, lot_id, hashlib.sha256(path.read_bytes()).hexdigest()
        )
    return root


def test_old_curated_data_is_refused_then_migrated_to_the_same_features(curated: Path) -> None:
    expected = build_feature_table(curated, ADC)
    folders = sorted(p.parent for p in curated.glob("**/results.parquet"))
    as_before_test_identity(folders[0])

    assert outdated_folders(curated) == [folders[0]]
    with pytest.raises(OutdatedCuratedData, match=r"yieldops curated migrate --curated"):
        build_feature_table(curated, ADC)

    (done,) = migrate(curated)

    assert done.folder == folders[0] and done.reused_numbers == []
    assert outdated_folders(curated) == [] and migrate(curated) == []
    again = build_feature_table(curated, ADC)
    assert again.feature_columns == expected.feature_columns
    pd.testing.assert_frame_equal(again.frame, expected.frame)
    lots = read_table(curated, "lots", ADC.name)
    assert set(lots["part_type"].to_pylist()) == {ADC.name}


def test_the_migration_reports_numbers_the_old_tables_cannot_tell_apart(
    curated: Path,
) -> None:
    folder = sorted(p.parent for p in curated.glob("**/results.parquet"))[0]
    results = pq.read_table(folder / "results.parquet")
    # Test 1001 written under number 1000 too, as a tester reusing numbers would.
    reused = results.filter(pc.equal(results["test_num"], 1001))
    reused = reused.set_column(
        reused.schema.get_field_index("test_num"),
        "test_num",
        pa.array([1000] * reused.num_rows, pa.uint32()),
    )
    pq.write_table(pa.concat_tables([results, reused]), folder / "results.parquet")
    as_before_test_identity(folder)

    (done,) = migrate(curated)

    assert done.reused_numbers == [1000]


def test_the_command_says_what_it_migrated(curated: Path, capsys) -> None:
    from yieldops.cli import main

    folder = sorted(p.parent for p in curated.glob("**/results.parquet"))[0]
    as_before_test_identity(folder)
    assert main(["curated", "migrate", "--curated", str(curated)]) == 0
    out = capsys.readouterr().out
    assert f"migrated {folder}: " in out and f"1 folder(s) migrated under {curated}" in out
    assert main(["curated", "migrate", "--curated", str(curated)]) == 0
    assert f"nothing to migrate under {curated}" in capsys.readouterr().out
