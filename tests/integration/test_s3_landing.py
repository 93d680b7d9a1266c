"""The S3 landing zone and S3 -> SQS event notifications, against a local moto server."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
import tracemalloc
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from tests.integration.conftest import first_trigger_event, notifying_queue

from yieldops.landing.events import object_refs_from_asset_extras, object_refs_from_messages
from yieldops.landing.factory import landing_zone
from yieldops.landing.s3 import S3LandingZone
from yieldops.stdf import NotStdfError, read_tables
from yieldops.synth import synthesize


@pytest.fixture(scope="module")
def stdf_files(tmp_path_factory) -> list[Path]:
    """Two plain synthetic lots and a gzip-compressed third."""
    out = tmp_path_factory.mktemp("stdf")
    plain = synthesize(out, lots=2, wafers_per_lot=1, seed=0)
    return plain + synthesize(out, lots=1, wafers_per_lot=1, seed=0, compression="gz", first_lot=2)


@pytest.fixture
def bucket(s3_client) -> str:
    name = f"yieldops-{uuid.uuid4().hex[:12]}"
    s3_client.create_bucket(Bucket=name)
    return name


def _put(s3_client, bucket: str, key: str, data: bytes) -> None:
    s3_client.put_object(Bucket=bucket, Key=key, Body=data)


def _get(s3_client, bucket: str, key: str) -> bytes:
    return s3_client.get_object(Bucket=bucket, Key=key)["Body"].read()


def _same_tables(left: dict, right: dict) -> bool:
    return left.keys() == right.keys() and all(left[name].equals(right[name]) for name in left)


def test_lists_only_landed_stdf_files_under_the_prefix(s3_client, bucket, stdf_files):
    landed = {f"lot-dir/{path.name}": path.read_bytes() for path in stdf_files}
    for key, data in landed.items():
        _put(s3_client, bucket, f"landing/{key}", data)
    for noise in (
        "landing/notes.txt",
        "landing/.upload.stdf",
        "landing/quarantine/old.stdf",
        "landingzone/elsewhere.stdf",
        "other/x.stdf",
    ):
        _put(s3_client, bucket, noise, b"not listed")

    zone = landing_zone(f"s3://{bucket}/landing/", s3_client)
    files = {landed_file.key: landed_file for landed_file in zone.list_files()}

    assert isinstance(zone, S3LandingZone)
    assert files.keys() == landed.keys()
    for key, data in landed.items():
        assert files[key].size == len(data)
        assert files[key].version == hashlib.md5(data).hexdigest()  # the ETag, unquoted
        assert files[key].modified.tzinfo is not None


def test_list_files_pages_through_large_listings(s3_client, bucket):
    keys = {f"lot/{i:04d}.stdf" for i in range(1005)}  # S3 lists 1000 keys per page
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda key: _put(s3_client, bucket, key, b"x"), keys))

    assert {f.key for f in S3LandingZone(f"s3://{bucket}", s3_client).list_files()} == keys


def test_open_reads_the_same_tables_as_the_local_file(s3_client, bucket, stdf_files):
    zone = S3LandingZone(f"s3://{bucket}/landing", s3_client)
    for path in stdf_files:
        _put(s3_client, bucket, f"landing/{path.name}", path.read_bytes())

    for path in stdf_files:
        with zone.open(path.name) as stream:
            assert _same_tables(read_tables(stream), read_tables(path)), path.name


def test_open_streams_instead_of_loading_the_object(s3_client, bucket):
    data = os.urandom(16 << 20)
    _put(s3_client, bucket, "big.stdf", data)
    zone = S3LandingZone(f"s3://{bucket}", s3_client)

    digest = hashlib.sha256()
    tracemalloc.start()
    try:
        with zone.open("big.stdf") as stream:
            while piece := stream.read(1 << 16):
                digest.update(piece)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert digest.hexdigest() == hashlib.sha256(data).hexdigest()
    assert peak < 4 << 20  # a quarter of the object


def test_reader_errors_name_the_s3_object(s3_client, bucket):
    _put(s3_client, bucket, "in/junk.stdf", b"this is no STDF file")
    zone = S3LandingZone(f"s3://{bucket}/in", s3_client)

    with pytest.raises(NotStdfError, match=re.escape(f"s3://{bucket}/in/junk.stdf")):
        read_tables(zone.open("junk.stdf"))


def test_open_of_a_missing_key_is_file_not_found(s3_client, bucket):
    with pytest.raises(FileNotFoundError, match=re.escape(f"s3://{bucket}/gone.stdf")):
        S3LandingZone(f"s3://{bucket}", s3_client).open("gone.stdf")


def test_quarantine_copies_the_file_with_its_reason_beside_it(s3_client, bucket, stdf_files):
    data = stdf_files[0].read_bytes()
    _put(s3_client, bucket, "landing/lot 7/bad é.stdf", data)
    zone = S3LandingZone(f"s3://{bucket}/landing", s3_client)
    reason = {"error": "TruncatedError", "offset": 1234}

    location = zone.quarantine("lot 7/bad é.stdf", reason)

    target = "quarantine/lot 7/bad é.stdf"
    assert location == f"s3://{bucket}/{target}"
    assert _get(s3_client, bucket, target) == data
    assert json.loads(_get(s3_client, bucket, f"{target}.reason.json")) == reason
    assert _get(s3_client, bucket, "landing/lot 7/bad é.stdf") == data  # the original stays
    assert [f.key for f in zone.list_files()] == ["lot 7/bad é.stdf"]


@pytest.mark.parametrize(
    ("url", "canonical", "prefix"),
    [
        ("s3://b", "s3://b", ""),
        ("s3://b/", "s3://b", ""),
        ("s3://b/landing", "s3://b/landing", "landing/"),
        ("s3://b/landing/", "s3://b/landing", "landing/"),
        ("s3://b//fab/landing//", "s3://b/fab/landing", "fab/landing/"),
    ],
)
def test_prefix_is_normalised(url, canonical, prefix):
    zone = S3LandingZone(url, client=object())  # the constructor makes no request

    assert (zone.url, zone.prefix) == (canonical, prefix)
    assert zone.uri("lot/a.stdf") == f"s3://b/{prefix}lot/a.stdf"


@pytest.mark.parametrize("url", ["s3:///landing", "file:///tmp/landing"])
def test_rejects_urls_without_a_bucket(url):
    with pytest.raises(ValueError, match="expected s3://bucket/prefix"):
        S3LandingZone(url, client=object())


def test_needs_a_client():
    with pytest.raises(ValueError, match="boto3 S3 client"):
        landing_zone("s3://b/landing")


def _drain(sqs_client, queue_url: str) -> list[dict]:
    messages: list[dict] = []
    while batch := sqs_client.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10).get(
        "Messages"
    ):
        messages.extend(batch)
        sqs_client.delete_message_batch(
            QueueUrl=queue_url,
            Entries=[{"Id": m["MessageId"], "ReceiptHandle": m["ReceiptHandle"]} for m in batch],
        )
    return messages


def test_bucket_notifications_decode_to_the_uploaded_keys(s3_client, sqs_client, bucket):
    queue_url = notifying_queue(s3_client, sqs_client, bucket)
    zone = S3LandingZone(f"s3://{bucket}/landing", s3_client)
    uploads = ["landing/lot 7/wafer é+1.stdf", "landing/plain.stdf.gz", "landing/readme.txt"]
    for key in uploads:
        _put(s3_client, bucket, key, key.encode())
    zone.quarantine("plain.stdf.gz", {"error": "test"})

    messages = _drain(sqs_client, queue_url)
    refs = object_refs_from_messages(messages)

    assert any(json.loads(m["Body"]).get("Event") == "s3:TestEvent" for m in messages)
    # Quarantine copies land beside the prefix: the prefix filter keeps them out.
    assert sorted(ref.key for ref in refs) == sorted(uploads)
    assert {ref.bucket for ref in refs} == {bucket}
    sizes = {ref.key: ref.size for ref in refs}
    assert [sizes[key] for key in uploads] == [len(key.encode()) for key in uploads]
    # The zone keeps only its landed STDF files, with the version its listing reports.
    landed = {key: ref.etag for ref in refs if (key := zone.zone_key(ref.bucket, ref.key))}
    assert landed == {f.key: f.version for f in zone.list_files()}
    assert set(landed) == {"lot 7/wafer é+1.stdf", "plain.stdf.gz"}


def test_airflow_sqs_trigger_payload_decodes_to_the_uploaded_keys(
    moto_connection, s3_client, sqs_client, bucket
):
    # Needs no metadata database: the connection comes from the environment. Airflow's
    # home is the throwaway one tests/conftest.py sets up.
    from airflow.providers.amazon.aws.triggers.sqs import SqsSensorTrigger

    queue_url = notifying_queue(s3_client, sqs_client, bucket)
    uploads = ["landing/lot 8/w 1.stdf", "landing/lot 8/w ü2.stdf"]
    for key in uploads:
        _put(s3_client, bucket, key, b"x")

    trigger = SqsSensorTrigger(
        sqs_queue=queue_url, aws_conn_id=moto_connection, max_messages=10, waiter_delay=1
    )
    event = asyncio.run(asyncio.wait_for(first_trigger_event(trigger), timeout=60))

    # What an AssetWatcher stores as the asset event's extra (Trigger.submit_event), as JSON.
    extra = json.loads(json.dumps({"from_trigger": True, "payload": event.payload}))
    assert event.payload["status"] == "success"
    assert sorted(ref.key for ref in object_refs_from_asset_extras([extra])) == sorted(uploads)
    assert "Messages" not in sqs_client.receive_message(QueueUrl=queue_url)  # deleted on receipt
