"""Files still being written (issue 17): never curated before they are complete, never once
per append. Real files in a local folder and on S3 (moto), a real SQLite ledger, and the
real stdf_ingest DAG (dag.test()) for the last appends."""

from __future__ import annotations

import json
import os
import re
import time
import uuid
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from tests.integration.conftest import load_dag

from yieldops.completeness import CompletenessRules
from yieldops.ingest import ingest_file
from yieldops.landing.claims import claim_files, pending_files
from yieldops.landing.factory import landing_zone
from yieldops.landing.ledger import CURATED, QUARANTINED, SUPERSEDED, WAITING, Ledger
from yieldops.landing.zones import LocalLandingZone
from yieldops.stdf import read_tables
from yieldops.synth import synthesize

MINUTE = 60


def record_starts(data: bytes) -> list[int]:
    """Where each record of a little-endian STDF file starts (REC_LEN, then type, subtype)."""
    starts, offset = [], 0
    while offset < len(data):
        starts.append(offset)
        offset += 4 + int.from_bytes(data[offset : offset + 2], "little")
    assert offset == len(data)
    return starts


def ten_appends(data: bytes) -> list[int]:
    """Where each of ten appends ends: inside the FAR, inside records, at record boundaries,
    and the last boundary before the MRR (a whole wafer without its MRR), then the end."""
    starts = record_starts(data)
    n = len(starts)
    cuts = [
        3,  # not even a FAR yet
        starts[n // 10] + 1,  # inside a record header
        starts[2 * n // 10],  # a record boundary
        starts[3 * n // 10] + 9,  # inside a record
        len(data) * 4 // 10,  # wherever it falls
        starts[5 * n // 10],
        starts[6 * n // 10] + 3,
        starts[-2] + 2,  # inside the record before the MRR
        starts[-1],  # everything but the MRR
        len(data),
    ]
    assert cuts == sorted(set(cuts)) and len(cuts) == 10
    return cuts


def append(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "ab") as stream:
        stream.write(data)


def set_age(path: Path, seconds: float) -> None:
    """Make the file look last changed ``seconds`` ago (instead of waiting that long)."""
    then = time.time() - seconds
    os.utime(path, (then, then))


def claim_and_ingest(zone, ledger, run_id, curated, **options) -> list:
    report = claim_files(zone, ledger, run_id)
    return [
        ingest_file(f, zone, ledger, run_id, curated_dir=curated, **options) for f in report.claimed
    ]


def curated_dies(entry) -> list[str]:
    return sorted(pq.read_table(f"{entry.output}/parts.parquet")["part_id"].to_pylist())


def whole_file_dies(path: Path) -> list[str]:
    return sorted(read_tables(path)["parts"]["part_id"].to_pylist())


@pytest.fixture
def home(tmp_path, monkeypatch, airflow_db) -> Path:
    monkeypatch.setenv("YIELDOPS_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


@pytest.fixture(scope="module")
def wafer(tmp_path_factory) -> Path:
    """One lot of one wafer (1,185 dies), as its tester leaves it: ending with its MRR."""
    (path,) = synthesize(tmp_path_factory.mktemp("lot"), lots=1, wafers_per_lot=1, seed=17)
    return path


def test_a_wafer_written_in_ten_appends_is_curated_once_with_all_its_dies(home, wafer):
    """Done when of issue 17: an ingest run after every append (the library's claim and
    ingest for the first eight, the stdf_ingest DAG for the last two): every partial
    version waits, the whole file is curated once."""
    data = wafer.read_bytes()
    target = home / "landing" / "tester-1" / wafer.name
    zone = LocalLandingZone(home / "landing")
    ledger = Ledger(f"sqlite:///{home / 'ledger.db'}")
    start = 0
    for step, end in enumerate(ten_appends(data)[:8]):
        append(target, data[start:end])
        start = end
        (outcome,) = claim_and_ingest(zone, ledger, f"step-{step}", home / "curated")
        assert outcome.status == WAITING, (end, outcome)
        assert pending_files(zone, ledger) == []  # the sensor starts no run for it

    append(target, data[start : record_starts(data)[-1]])  # all but the MRR
    without_mrr = load_dag("stdf_ingest").test()
    (waiting,) = ledger.run_entries(without_mrr.run_id)
    assert without_mrr.state == "success" and waiting.status == WAITING
    assert waiting.reason.startswith("no MRR at the end: waits, looked at again at ")

    append(target, data[record_starts(data)[-1] :])
    whole = load_dag("stdf_ingest").test()
    (curated,) = ledger.run_entries(whole.run_id)
    assert whole.state == "success" and curated.status == CURATED

    statuses = Counter(e.status for e in ledger.entries())
    assert statuses == {CURATED: 1, SUPERSEDED: 9}
    assert curated_dies(curated) == whole_file_dies(wafer) and len(curated_dies(curated)) > 1000
    assert len(list((home / "curated").glob("**/parts.parquet"))) == 1
    assert claim_files(zone, ledger, "after").claimed == []
    assert not (home / "quarantine").exists()


def test_a_file_that_stops_growing_without_its_mrr_waits_then_is_quarantined(home, wafer):
    from yieldops_airflow.ingest import waiting_text

    data = wafer.read_bytes()
    target = home / "landing" / "tester-1" / wafer.name
    append(target, data[: record_starts(data)[-1]])
    set_age(target, 10 * MINUTE)
    zone = LocalLandingZone(home / "landing")
    ledger = Ledger(f"sqlite:///{home / 'ledger.db'}")
    rules = CompletenessRules.of(quiet_seconds=5 * MINUTE, max_age_seconds=60 * MINUTE)

    (young,) = claim_and_ingest(zone, ledger, "young", home / "curated", rules=rules)
    assert young.status == WAITING and young.reason.startswith("no MRR at the end: waits")
    (waiting,) = ledger.waiting(zone.url).values()
    assert (waiting.recheck_at - waiting.modified_at).total_seconds() == 60 * MINUTE
    assert pending_files(zone, ledger) == []
    assert [w.source_key for w in claim_files(zone, ledger, "again").waiting] == [
        waiting.source_key
    ]
    assert waiting_text([waiting]).startswith(f"1 file(s) not complete yet: {waiting.source_key} (")

    set_age(target, 2 * 60 * MINUTE)  # as if two hours had passed since its last change
    assert [f.key for f in pending_files(zone, ledger)] == [waiting.source_key]
    (old,) = claim_and_ingest(zone, ledger, "old", home / "curated", rules=rules)
    assert old.status == QUARANTINED
    assert old.reason.startswith("incomplete: no MRR at the end; last changed ")
    assert re.search(
        r" UTC, 2\.\d h ago, longer than the 60 min a file still being written ", old.reason
    )
    reason = json.loads(
        (home / "quarantine" / "tester-1" / f"{wafer.name}.reason.json").read_text()
    )
    assert reason["stage"] == "incomplete" and reason["details"]["max_age_seconds"] == 3600
    assert ledger.get(old.sha256).status == QUARANTINED
    assert claim_files(zone, ledger, "after").claimed == []


def test_a_tester_that_writes_no_mrr_has_its_file_curated_once_quiet(home, wafer, tmp_path):
    from tests.conftest import ROOT

    config = tmp_path / "config"
    (config / "products").mkdir(parents=True)
    shipped = (ROOT / "include/config/products/YO-7NM-ADC.yaml").read_text()
    assert "\ntester:" not in shipped
    (config / "products" / "YO-7NM-ADC.yaml").write_text(shipped + "tester:\n  writes_mrr: false\n")
    data = wafer.read_bytes()
    target = home / "landing" / "tester-1" / wafer.name
    append(target, data[: record_starts(data)[-1]])  # its tester ends the file without MRR
    set_age(target, 1 * MINUTE)
    zone = LocalLandingZone(home / "landing")
    ledger = Ledger(f"sqlite:///{home / 'ledger.db'}")
    rules = CompletenessRules.of(quiet_seconds=5 * MINUTE, max_age_seconds=60 * MINUTE)
    options = {"rules": rules, "config_dir": config}

    (young,) = claim_and_ingest(zone, ledger, "young", home / "curated", **options)
    assert young.status == WAITING
    assert re.match(
        r"no MRR \(its tester writes none\) and changed \d+ s ago, within the quiet period "
        r"of 5 min: waits",
        young.reason,
    )
    assert claim_files(zone, ledger, "again").claimed == []

    set_age(target, 10 * MINUTE)  # quiet for longer than the quiet period
    (quiet,) = claim_and_ingest(zone, ledger, "quiet", home / "curated", **options)
    assert quiet.status == CURATED
    entry = ledger.get(quiet.sha256)
    assert curated_dies(entry) == whole_file_dies(wafer)
    assert Counter(e.status for e in ledger.entries()) == {CURATED: 1}


def test_a_partial_s3_upload_overwritten_whole_is_curated_once(home, s3_client, tmp_path):
    bucket = f"fab-{uuid.uuid4().hex[:10]}"
    s3_client.create_bucket(Bucket=bucket)
    (lot,) = synthesize(tmp_path / "lot", lots=1, wafers_per_lot=1, seed=5, compression="gz")
    key = f"landing/tester 1/{lot.name}"
    zone = landing_zone(f"s3://{bucket}/landing", s3_client)
    ledger = Ledger(f"sqlite:///{home / 'ledger.db'}")

    s3_client.put_object(Bucket=bucket, Key=key, Body=lot.read_bytes()[: lot.stat().st_size // 2])
    (partial,) = claim_and_ingest(zone, ledger, "partial", home / "curated")
    assert partial.status == WAITING
    assert partial.reason.startswith("the compressed stream ends before its end marker")
    assert pending_files(zone, ledger) == []

    s3_client.upload_file(str(lot), bucket, key)  # the tester uploads the whole file again
    report = claim_files(zone, ledger, "whole")
    assert report.superseded == [f"tester 1/{lot.name}"]
    (whole,) = [
        ingest_file(f, zone, ledger, "whole", curated_dir=home / "curated") for f in report.claimed
    ]
    assert whole.status == CURATED
    assert curated_dies(ledger.get(whole.sha256)) == whole_file_dies(lot)
    assert Counter(e.status for e in ledger.entries()) == {CURATED: 1, SUPERSEDED: 1}
    assert ledger.get(partial.sha256).reason.startswith("superseded by newer bytes under its key")
