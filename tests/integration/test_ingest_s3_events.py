"""stdf_ingest in events mode on S3: bucket notifications -> SQS -> the asset watcher's
trigger -> a DAG run that ingests from S3. All against a moto server on loopback."""

from __future__ import annotations

import asyncio
import json
import uuid
from types import SimpleNamespace

import pytest
from tests.integration.conftest import first_trigger_event, notifying_queue

from yieldops.landing.ledger import CURATED, QUARANTINED, Ledger
from yieldops.synth import synthesize


@pytest.fixture
def s3_landing(tmp_path, monkeypatch, airflow_db, moto_connection, s3_client, sqs_client):
    bucket = f"fab-{uuid.uuid4().hex[:10]}"
    s3_client.create_bucket(Bucket=bucket)
    queue_url = notifying_queue(s3_client, sqs_client, bucket)
    monkeypatch.setenv("YIELDOPS_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("YIELDOPS_LANDING_URL", f"s3://{bucket}/landing")
    monkeypatch.setenv("YIELDOPS_INGEST_TRIGGER", "events")
    monkeypatch.setenv("YIELDOPS_SQS_QUEUE_URL", queue_url)
    monkeypatch.setenv("YIELDOPS_AWS_CONN_ID", moto_connection)
    # No waiting for the cut file to be uploaded whole: it is quarantined in this run.
    monkeypatch.setenv("YIELDOPS_INCOMPLETE_MAX_AGE_SECONDS", "0")

    keys = []
    for path in synthesize(tmp_path / "lots", lots=2, wafers_per_lot=1, seed=11, compression="gz"):
        keys.append(f"landing/tester 1/{path.name}")
        s3_client.upload_file(str(path), bucket, keys[-1])
    keys.append("landing/tester 1/cut.stdf")
    s3_client.put_object(Bucket=bucket, Key=keys[-1], Body=path.read_bytes()[:4000])
    return SimpleNamespace(bucket=bucket, queue_url=queue_url, keys=keys, home=tmp_path / "home")


def _landing_watcher(dag):
    asset = dag.timetable.asset_condition
    (watcher,) = asset.watchers
    return asset, watcher


def test_s3_events_start_a_run_that_ingests_from_s3(s3_landing, s3_client):
    from airflow.dag_processing.dagbag import DagBag
    from tests.conftest import ROOT

    from yieldops_airflow.ingest import event_keys

    dag = DagBag(dag_folder=ROOT / "dags" / "stdf_ingest.py").dags["stdf_ingest"]
    assert "wait_for_files" not in dag.task_ids  # no sensor: events and the sweep start runs

    # What the triggerer does for the asset watcher: the common-messaging trigger for
    # scheme "sqs" runs Airflow's SqsSensorTrigger on our queue.
    asset, watcher = _landing_watcher(dag)
    assert asset.uri == f"s3://{s3_landing.bucket}/landing"
    classpath, kwargs = watcher.trigger.serialize()
    assert classpath.endswith("SqsSensorTrigger") and kwargs["sqs_queue"] == s3_landing.queue_url
    event = asyncio.run(asyncio.wait_for(first_trigger_event(watcher.trigger), timeout=60))
    extra = json.loads(json.dumps({"from_trigger": True, "payload": event.payload}))
    triggering = {asset: [SimpleNamespace(extra=extra)]}
    assert sorted(event_keys(triggering)) == sorted(s3_landing.keys)

    # The run it starts claims what the ledger has not finished, straight from S3.
    run = dag.test()
    assert run.state == "failed"  # degraded: the cut file is quarantined
    ledger = Ledger(f"sqlite:///{s3_landing.home / 'ledger.db'}")
    statuses = {e.source_key: e.status for e in ledger.entries()}
    ledger.close()
    assert statuses == {
        "tester 1/YO-7NM-ADC_S11-L001.stdf.gz": CURATED,
        "tester 1/YO-7NM-ADC_S11-L002.stdf.gz": CURATED,
        "tester 1/cut.stdf": QUARANTINED,
    }
    quarantined = s3_client.list_objects_v2(Bucket=s3_landing.bucket, Prefix="quarantine/")
    assert sorted(o["Key"] for o in quarantined["Contents"]) == [
        "quarantine/tester 1/cut.stdf",
        "quarantine/tester 1/cut.stdf.reason.json",
    ]
    curated = sorted(p.parent.name for p in (s3_landing.home / "curated").glob("**/parts.parquet"))
    assert len(curated) == 2
