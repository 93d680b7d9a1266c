"""What the reader refuses or counts reaches ingest: a bomb is quarantined with its numbers,
records skipped are in the outcome and the ledger of a curated file."""

from __future__ import annotations

import gzip
import struct

import pytest
from tests.unit.stdf.test_limits import bomb
from tests.unit.stdf.test_plausibility import headers

from yieldops.ingest import ingest_file
from yieldops.landing.claims import claim_files
from yieldops.landing.ledger import CURATED, QUARANTINED, Ledger
from yieldops.landing.zones import LocalLandingZone
from yieldops.settings import load_settings
from yieldops.stdf import DecompressionLimits
from yieldops.synth import DEFAULT_PRODUCT, generate_lot, lot_to_bytes

MIB = 1 << 20


@pytest.fixture
def plant(tmp_path):
    (tmp_path / "landing" / "tester-a").mkdir(parents=True)
    ledger = Ledger(f"sqlite:///{tmp_path / 'ledger.db'}")
    yield tmp_path, LocalLandingZone(tmp_path / "landing"), ledger
    ledger.close()


def ingest_all(plant, **options) -> dict:
    root, zone, ledger = plant
    claimed = claim_files(zone, ledger, "run-1").claimed
    outcomes = [
        ingest_file(f, zone, ledger, "run-1", curated_dir=root / "curated", **options)
        for f in claimed
    ]
    return {o.key: o for o in outcomes}


def test_a_bomb_is_quarantined_with_its_numbers_and_the_batch_goes_on(plant):
    root, _, ledger = plant
    bomb(root / "landing/tester-a/bomb.stdf.gz", gzip.compress, b"\0", 1 << 30)
    good = lot_to_bytes(generate_lot(DEFAULT_PRODUCT, lot_index=0, seed=0, wafers=1))
    (root / "landing/tester-a/good.stdf.gz").write_bytes(gzip.compress(good))

    outcomes = ingest_all(plant, limits=DecompressionLimits(ratio_from=MIB))

    bad = outcomes["tester-a/bomb.stdf.gz"]
    assert bad.status == QUARANTINED
    assert bad.reason.startswith("decode: decompresses ")
    assert "times its size, past the limit of 200" in bad.reason
    assert "compressed bytes read" in bad.reason
    (entry,) = [e for e in ledger.entries() if e.source_key == "tester-a/bomb.stdf.gz"]
    assert (entry.status, entry.reason) == (QUARANTINED, bad.reason)
    reason = (root / "quarantine/tester-a/bomb.stdf.gz.reason.json").read_text()
    assert "bomb.stdf.gz" in reason and "compressed bytes read" in reason
    assert outcomes["tester-a/good.stdf.gz"].status == CURATED


def test_skipped_records_reach_the_outcome_and_the_ledger(plant):
    root, _, ledger = plant
    data = lot_to_bytes(generate_lot(DEFAULT_PRODUCT, lot_index=0, seed=0, wafers=1))
    first_wir = next(offset for offset, typ, sub, _ in headers(data) if (typ, sub) == (2, 10))
    image = struct.pack("<HBB", 3, 180, 1) + b"abc"  # REC_TYP 180: reserved for Image software
    (root / "landing/tester-a/lot.stdf").write_bytes(data[:first_wir] + image + data[first_wir:])

    (outcome,) = ingest_all(plant).values()

    warning = "skipped 1 IMAGE record(s) (REC_TYP 180, reserved for Image software): not decoded"
    assert outcome.status == CURATED and outcome.parts == 1185
    assert outcome.warnings == [warning]
    (entry,) = ledger.entries()
    assert entry.reason == f"decoded with warnings: {warning}"


def test_the_limits_are_settings(monkeypatch):
    assert (load_settings().max_decompressed_bytes, load_settings().max_compression_ratio) == (
        DecompressionLimits().max_bytes,
        DecompressionLimits().max_ratio,
    )
    monkeypatch.setenv("YIELDOPS_MAX_DECOMPRESSED_BYTES", str(1 << 30))
    monkeypatch.setenv("YIELDOPS_MAX_COMPRESSION_RATIO", "50")
    settings = load_settings()
    assert (settings.max_decompressed_bytes, settings.max_compression_ratio) == (1 << 30, 50.0)
