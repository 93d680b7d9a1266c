"""stdf_ingest end to end with dag.test(): real Airflow, real files, real ledger."""

from __future__ import annotations

import io
import json
import shutil

import pyarrow.parquet as pq
import pytest
from tests.integration.conftest import load_dag

from yieldops.landing.ledger import CURATED, DUPLICATE, QUARANTINED, Ledger
from yieldops.stdf.writer import StdfWriter
from yieldops.synth import synthesize

PRODUCT = "YO-7NM-ADC"


def _bad_bins_file() -> bytes:
    """Decodes fine but breaks the product's expectations: an undeclared hard bin."""
    stream = io.BytesIO()
    w = StdfWriter(stream)
    w.write("MIR", SETUP_T=1, START_T=1_700_000_000, LOT_ID="BADBIN", PART_TYP=PRODUCT)
    for i in range(20):
        w.write("PIR", HEAD_NUM=1, SITE_NUM=0)
        w.write("PRR", HEAD_NUM=1, SITE_NUM=0, PART_FLG=8, NUM_TEST=0, HARD_BIN=99, SOFT_BIN=99,
                X_COORD=i % 5, Y_COORD=i // 5, TEST_T=1, PART_ID=str(i))  # fmt: skip
    w.write("MRR", FINISH_T=1_700_000_100)
    return stream.getvalue()


@pytest.fixture
def plant(tmp_path, monkeypatch, airflow_db):
    """A yieldops home with a landing zone of good, duplicate, corrupt and invalid files."""
    home = tmp_path / "home"
    landing = home / "landing"
    monkeypatch.setenv("YIELDOPS_HOME", str(home))
    monkeypatch.setenv("YIELDOPS_INGEST_TRIGGER", "sensor")
    # No waiting for the cut file to be written on: it is quarantined in this run.
    monkeypatch.setenv("YIELDOPS_INCOMPLETE_MAX_AGE_SECONDS", "0")
    good = synthesize(landing / "tester-a", lots=2, wafers_per_lot=1, seed=3)
    good += synthesize(
        landing / "tester-b", lots=1, wafers_per_lot=1, seed=3, first_lot=2, compression="gz"
    )
    shutil.copy(good[0], landing / "tester-b" / "resent-under-another-name.stdf")
    # The gzip-compressed lot landed again uncompressed: other bytes, the same STDF content.
    synthesize(landing / "tester-c", lots=1, wafers_per_lot=1, seed=3, first_lot=2)
    (landing / "tester-a" / "cut.stdf").write_bytes(good[1].read_bytes()[:50_000])
    (landing / "tester-a" / "badbin.stdf").write_bytes(_bad_bins_file())
    return home


def _task_states(run) -> dict[tuple[str, int], str]:
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session

    with create_session() as session:
        tis = session.query(TaskInstance).filter_by(dag_id=run.dag_id, run_id=run.run_id).all()
        return {(ti.task_id, ti.map_index): ti.state for ti in tis}


def test_ingest_curates_good_files_quarantines_bad_ones_and_runs_once(plant, monkeypatch):
    run = load_dag("stdf_ingest").test()

    # The run is visibly degraded: two files were quarantined.
    assert run.state == "failed"
    states = _task_states(run)
    assert states[("wait_for_files", -1)] == "success"
    assert states[("claim", -1)] == "success"
    ingest_states = sorted(s for (task, _), s in states.items() if task == "ingest")
    assert ingest_states == ["failed", "failed", "success", "success", "success", "success"]
    assert states[("publish", -1)] == "success" and states[("report", -1)] == "failed"

    ledger = Ledger(f"sqlite:///{plant / 'ledger.db'}")
    entries = {e.source_key: e for e in ledger.entries()}
    assert sorted(entries) == [
        "tester-a/YO-7NM-ADC_S3-L001.stdf", "tester-a/YO-7NM-ADC_S3-L002.stdf",
        "tester-a/badbin.stdf", "tester-a/cut.stdf", "tester-b/YO-7NM-ADC_S3-L003.stdf.gz",
        "tester-c/YO-7NM-ADC_S3-L003.stdf",
    ]  # fmt: skip  # the resent copy is the same bytes: not a second entry
    assert entries["tester-a/cut.stdf"].status == QUARANTINED
    assert "ends inside a record" in entries["tester-a/cut.stdf"].reason
    assert entries["tester-a/badbin.stdf"].status == QUARANTINED
    assert entries["tester-a/badbin.stdf"].reason.startswith("validation")

    curated = sorted(e.lot_id for e in entries.values() if e.status == CURATED)
    assert curated == ["S3-L001", "S3-L002", "S3-L003"]  # S3-L003 once, gzip or not
    (copy,) = [e for e in entries.values() if e.status == DUPLICATE]
    pair = {"tester-b/YO-7NM-ADC_S3-L003.stdf.gz", "tester-c/YO-7NM-ADC_S3-L003.stdf"}
    (first,) = [entries[key] for key in pair - {copy.source_key}]  # whichever ran first
    assert copy.source_key in pair and first.status == CURATED
    assert copy.lot_id == "S3-L003" and copy.output == first.output
    assert copy.reason == f"same STDF content as {first.source_key} (curated): curated once"
    for entry in entries.values():
        if entry.status == CURATED:
            parts = pq.read_table(f"{entry.output}/parts.parquet")
            assert parts.num_rows > 1000 and set(parts["lot_id"].to_pylist()) == {entry.lot_id}
            assert f"product={PRODUCT}/lot={entry.lot_id}/file={entry.sha256}" in entry.output

    reason = json.loads((plant / "quarantine/tester-a/cut.stdf.reason.json").read_text())
    assert reason["stage"] == "incomplete" and reason["dag_run_id"] == run.run_id
    assert (plant / "quarantine/tester-a/cut.stdf").exists()
    assert (plant / "landing/tester-a/cut.stdf").exists()  # nothing is lost

    assert _curated_asset_events(run) == {f"curated/{PRODUCT}": 1}

    # Every validated file links its Data Docs page (the quarantined bad-bins file too).
    links = _data_docs_links(run)
    assert len(links) == 4 and all(link.startswith("/yieldops/data-docs/runs/") for link in links)
    for link in links:
        assert (plant / "data-docs" / link.removeprefix("/yieldops/data-docs/")).is_file()

    # Nothing new landed: a second run claims nothing and changes nothing.
    monkeypatch.setenv("YIELDOPS_INGEST_TRIGGER", "sweep")
    second = load_dag("stdf_ingest").test()
    assert second.state == "success"
    assert not [k for k in _task_states(second) if k[0] == "ingest" and k[1] >= 0]
    assert {e.source_key: (e.status, e.attempts) for e in ledger.entries()} == {
        k: (e.status, e.attempts) for k, e in entries.items()
    }
    assert _curated_asset_events(run, second) == {f"curated/{PRODUCT}": 1}

    # A dry run lists a newly landed file without claiming it.
    synthesize(plant / "landing" / "tester-d", lots=1, wafers_per_lot=1, seed=3, first_lot=3)
    dry = load_dag("stdf_ingest").test(run_conf={"dry_run": True})
    assert dry.state == "success"
    assert len(ledger.entries()) == len(entries)

    # Reprocessing a lot takes its file again (with the new one) and replaces its output.
    third = load_dag("stdf_ingest").test(run_conf={"reprocess_lot": "S3-L002"})
    assert third.state == "success"
    by_lot = {e.lot_id: e for e in ledger.entries()}
    assert (by_lot["S3-L002"].status, by_lot["S3-L002"].attempts) == (CURATED, 2)
    assert (by_lot["S3-L004"].status, by_lot["S3-L004"].dag_run_id) == (CURATED, third.run_id)
    assert _curated_asset_events(run, second, dry, third) == {f"curated/{PRODUCT}": 2}
    ledger.close()


def _data_docs_links(run) -> list[str]:
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        rows = (
            session.query(XComModel.value)
            .filter_by(
                dag_id=run.dag_id, run_id=run.run_id, task_id="ingest", key="_link_DataDocsLink"
            )
            .all()
        )
    # Stored as JSON text or as the plain string, depending on the XCom backend.
    return [value.strip('"') for (value,) in rows]


def _curated_asset_events(*runs) -> dict[str, int]:
    """Curated asset events these runs emitted (other tests' runs share the database)."""
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session

    with create_session() as session:
        rows = (
            session.query(AssetModel.name)
            .join(AssetEvent, AssetEvent.asset_id == AssetModel.id)
            .filter(AssetEvent.source_run_id.in_([run.run_id for run in runs]))
            .all()
        )
    counts: dict[str, int] = {}
    for (name,) in rows:
        if name.startswith("curated/"):
            counts[name] = counts.get(name, 0) + 1
    return counts
