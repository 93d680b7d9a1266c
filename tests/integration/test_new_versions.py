"""A landed key rewritten with new content after it was curated: the new version replaces
the old one in the curated dataset and in training's features, never beside it."""

from __future__ import annotations

import shutil
from pathlib import Path

import pyarrow.compute as pc
import pytest
from tests.integration.conftest import load_dag

from yieldops.config import product
from yieldops.curated.dataset import read_table
from yieldops.features import build_feature_table
from yieldops.landing.ledger import CURATED, SUPERSEDED, Ledger
from yieldops.stdf import read_tables
from yieldops.synth import synthesize

PRODUCT = "YO-7NM-ADC"
KEY = "tester-a/lot1.stdf"


@pytest.fixture
def home(tmp_path, monkeypatch, airflow_db):
    home = tmp_path / "home"
    monkeypatch.setenv("YIELDOPS_HOME", str(home))
    monkeypatch.setenv("YIELDOPS_INGEST_TRIGGER", "sweep")
    return home


def _lot_file(folder, wafers: int):
    """Lot S3-L001 tested on ``wafers`` wafers: its first wafer is the same in both."""
    (path,) = synthesize(folder, lots=1, wafers_per_lot=wafers, seed=3)
    return path


def _dies(table) -> set[tuple]:
    return set(zip(*(table[c].to_pylist() for c in ("lot_id", "wafer_id", "x", "y"))))


def test_a_rewritten_key_replaces_its_curated_data(home, tmp_path):
    landed = home / "landing" / KEY
    landed.parent.mkdir(parents=True)
    shutil.copy(_lot_file(tmp_path / "v1", wafers=1), landed)
    assert load_dag("stdf_ingest").test().state == "success"
    ledger = Ledger(f"sqlite:///{home / 'ledger.db'}")
    (first,) = ledger.entries()

    # The tester writes the lot again under the same name, now with its second wafer.
    shutil.copy(_lot_file(tmp_path / "v2", wafers=2), landed)
    rerun = load_dag("stdf_ingest").test()

    assert rerun.state == "success"
    entries = {e.sha256: e for e in ledger.entries()}
    second = next(e for sha, e in entries.items() if sha != first.sha256)
    assert (entries[first.sha256].status, second.status) == (SUPERSEDED, CURATED)
    assert (
        second.reason == f"new version of the key: replaced the curated data of {first.sha256[:12]}"
    )
    assert ledger.versions_of(second.sha256) == [first.sha256, second.sha256]
    assert not Path(first.output).exists()

    whole = read_tables(landed)["parts"]
    parts = read_table(home / "curated", "parts", PRODUCT)
    assert set(parts["file"].to_pylist()) == {second.sha256}
    assert parts.num_rows == whole.num_rows  # every die of the new version once
    assert _dies(parts) == _dies(whole)
    features = build_feature_table(home / "curated", product(PRODUCT))
    assert [entry["file"] for entry in features.lineage()] == [second.sha256]
    assert features.n_dies == len(_dies(whole))
    ledger.close()


def test_readers_skip_writes_in_progress_and_versions_being_replaced(tmp_path):
    from yieldops.curated.dataset import write_file_tables

    tables = read_tables(_lot_file(tmp_path / "lot", wafers=1))
    curated = tmp_path / "curated"
    old = write_file_tables(tables, curated, PRODUCT, "S3-L001", "a" * 64)
    # What staged_dir leaves visible for an instant: the staged new folder, the old moved aside.
    shutil.copytree(old, old.with_name(f".file={'b' * 64}.x.partial"))
    shutil.copytree(old, old.with_name(f".{old.name}.123.old"))

    parts = read_table(curated, "parts", PRODUCT)

    assert parts.num_rows == tables["parts"].num_rows
    assert pc.unique(parts["file"]).to_pylist() == ["a" * 64]

    new = write_file_tables(tables, curated, PRODUCT, "S3-L001", "c" * 64, replaces=[old])
    assert not old.exists() and set(read_table(curated, "parts")["file"].to_pylist()) == {
        new.name[5:]
    }
