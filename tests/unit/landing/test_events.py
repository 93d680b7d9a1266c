"""Decoding S3 event notifications, on literal bodies of the shapes AWS documents."""

from __future__ import annotations

import json
import logging

import pytest

from yieldops.landing.events import (
    S3ObjectRef,
    object_refs_from_asset_extras,
    object_refs_from_messages,
    object_refs_from_trigger_payload,
)

EMPTY_FILE_ETAG = "d41d8cd98f00b204e9800998ecf8427e"  # pragma: allowlist secret


def s3_record(key: str, event: str = "ObjectCreated:Put", bucket: str = "fab-landing") -> dict:
    """One record as in AWS's "Event message structure" page (fields we ignore included)."""
    return {
        "eventVersion": "2.1",
        "eventSource": "aws:s3",
        "awsRegion": "us-east-1",
        "eventTime": "2026-11-26T07:00:00.000Z",
        "eventName": event,
        "userIdentity": {"principalId": "AWS:AIDAEXAMPLE"},
        "requestParameters": {"sourceIPAddress": "203.0.113.7"},
        "responseElements": {
            "x-amz-request-id": "C3D13FE58DE4C810",  # pragma: allowlist secret
            "x-amz-id-2": "FMyUVURIY8",
        },
        "s3": {
            "s3SchemaVersion": "1.0",
            "configurationId": "landed-stdf",
            "bucket": {
                "name": bucket,
                "ownerIdentity": {"principalId": "A3NL1KOZZKExample"},
                "arn": f"arn:aws:s3:::{bucket}",
            },
            "object": {
                "key": key,
                "size": 1024,
                "eTag": EMPTY_FILE_ETAG,
                "sequencer": "0055AED6DCD90281E5",  # pragma: allowlist secret
            },
        },
    }


def s3_body(*records: dict) -> str:
    return json.dumps({"Records": list(records)})


def sqs_message(body: str, message_id: str = "m1") -> dict:
    """A message as SQS ReceiveMessage returns it."""
    return {
        "MessageId": message_id,
        "ReceiptHandle": f"AQEB{message_id}",
        "MD5OfBody": "0123456789abcdef0123456789abcdef",  # pragma: allowlist secret
        "Body": body,
    }


TEST_EVENT = json.dumps(
    {
        "Service": "Amazon S3",
        "Event": "s3:TestEvent",
        "Time": "2026-11-26T07:00:00.000Z",
        "Bucket": "fab-landing",
        "RequestId": "5582815E1AEA5ADF",
        # AWS's documentation example, not a secret
        "HostId": "8cLeGAmw098X5cv4Zkwcmo8vvZa3eH3eKxsPzbB9wrR+YstdA6Knx4Ip8EXAMPLE",  # pragma: allowlist secret  # noqa: E501
    }
)


def ref(key: str) -> S3ObjectRef:
    return S3ObjectRef("fab-landing", key, 1024, EMPTY_FILE_ETAG)


@pytest.mark.parametrize(
    ("encoded", "key"),
    [
        ("lot7/wafer1.stdf", "lot7/wafer1.stdf"),
        ("lot+7/wafer+1.stdf", "lot 7/wafer 1.stdf"),
        ("lot7/w%C3%A9%2B1.stdf.gz", "lot7/wé+1.stdf.gz"),
        ("lot7%2Fwafer1.stdf", "lot7/wafer1.stdf"),  # some encoders escape the slash too
    ],
)
def test_keys_are_url_decoded(encoded, key):
    assert object_refs_from_messages([s3_body(s3_record(encoded))]) == [ref(key)]


def test_reads_sqs_messages_bodies_and_decoded_bodies_alike():
    body = s3_body(s3_record("a.stdf"), s3_record("b.stdf"))

    expected = [ref("a.stdf"), ref("b.stdf")]
    assert object_refs_from_messages([sqs_message(body)]) == expected
    assert object_refs_from_messages([body]) == expected
    assert object_refs_from_messages([body.encode()]) == expected
    assert object_refs_from_messages([json.loads(body)]) == expected


@pytest.mark.parametrize(
    "event", ["ObjectCreated:Put", "ObjectCreated:Copy", "ObjectCreated:CompleteMultipartUpload"]
)
def test_every_kind_of_creation_counts(event):
    assert object_refs_from_messages([s3_body(s3_record("a.stdf", event))]) == [ref("a.stdf")]


def test_other_events_name_no_object():
    body = s3_body(s3_record("gone.stdf", "ObjectRemoved:Delete"), s3_record("kept.stdf"))

    assert object_refs_from_messages([body]) == [ref("kept.stdf")]


def test_the_s3_test_event_is_skipped_quietly(caplog):
    with caplog.at_level(logging.WARNING):
        refs = object_refs_from_messages([sqs_message(TEST_EVENT), s3_body(s3_record("a.stdf"))])

    assert refs == [ref("a.stdf")]
    assert not caplog.records


def test_unwraps_sns_notifications():
    def sns(message: str) -> str:
        return json.dumps(
            {
                "Type": "Notification",
                "MessageId": "22b80b92-fdea-4c2c-8f9d-bdfb0c7bf324",
                "TopicArn": "arn:aws:sns:us-east-1:123456789012:fab-landing",
                "Subject": "Amazon S3 Notification",
                "Message": message,
                "Timestamp": "2026-11-26T07:00:00.000Z",
                "SignatureVersion": "1",
            }
        )

    messages = [sqs_message(sns(TEST_EVENT)), sqs_message(sns(s3_body(s3_record("lot+7/a.stdf"))))]

    assert object_refs_from_messages(messages) == [ref("lot 7/a.stdf")]


@pytest.mark.parametrize(
    "junk",
    [
        "not json at all",
        "",
        "[1, 2]",
        '{"hello": "world"}',
        json.dumps({"Records": "nope"}),
        json.dumps({"Type": "Notification", "Message": "{broken"}),
        s3_body({"eventName": "ObjectCreated:Put"}),  # no s3 part
        s3_body({"eventName": "ObjectCreated:Put", "s3": {"bucket": "flat", "object": {}}}),
        s3_body("a record that is a string"),
    ],
)
def test_junk_is_skipped_with_a_warning(junk, caplog):
    good = s3_body(s3_record("a.stdf"))

    with caplog.at_level(logging.WARNING, logger="yieldops.landing.events"):
        refs = object_refs_from_messages([sqs_message(junk), sqs_message(good)])

    assert refs == [ref("a.stdf")]
    assert [r.levelname for r in caplog.records] == ["WARNING"]


def test_a_redelivered_event_is_named_once():
    body = s3_body(s3_record("a.stdf"))
    reupload = s3_record("a.stdf")
    changed_etag = "9e107d9d372bb6826bd81d3542a419d6"  # pragma: allowlist secret
    reupload["s3"]["object"]["eTag"] = changed_etag

    refs = object_refs_from_messages([sqs_message(body, "m1"), sqs_message(body, "m2")])
    assert refs == [ref("a.stdf")]
    # New bytes under the same key are a new object to ingest.
    assert len(object_refs_from_messages([body, s3_body(reupload)])) == 2


def test_sizes_and_etags_may_be_missing():
    record = s3_record("a.stdf")
    del record["s3"]["object"]["size"], record["s3"]["object"]["eTag"]

    assert object_refs_from_messages([s3_body(record)]) == [S3ObjectRef("fab-landing", "a.stdf")]


def trigger_payload(*bodies: str) -> dict:
    """What SqsSensorTrigger yields: TriggerEvent({"status": "success", "message_batch": ...})."""
    messages = [sqs_message(body, f"m{i}") for i, body in enumerate(bodies)]
    return {"status": "success", "message_batch": messages}


def test_reads_the_sqs_trigger_payload():
    payload = trigger_payload(
        TEST_EVENT, s3_body(s3_record("a.stdf")), s3_body(s3_record("b.stdf"))
    )

    assert object_refs_from_trigger_payload(payload) == [ref("a.stdf"), ref("b.stdf")]


def test_reads_asset_event_extras_from_an_asset_watcher():
    # Trigger.submit_event stores {"from_trigger": True, "payload": event.payload}; one DAG
    # run may gather several such events, and events posted by a task or the API.
    extras = [
        {"from_trigger": True, "payload": trigger_payload(s3_body(s3_record("a.stdf")))},
        {"from_trigger": True, "payload": trigger_payload(s3_body(s3_record("a.stdf")))},
        {"note": "posted through the REST API"},
        {"from_trigger": True, "payload": trigger_payload(s3_body(s3_record("b+1.stdf")))},
    ]

    assert object_refs_from_asset_extras(extras) == [ref("a.stdf"), ref("b 1.stdf")]
