"""Fuzzing the S3 event decoder: whatever the SQS queue hands over (any JSON, text or bytes,
S3 events with fields of any type, wrapped in SNS notifications, SQS messages, trigger
payloads and asset event extras), the decoder gives well-formed object references and skips
the rest: the claim step calls it, and one bad message must not stop the run.
"""

from __future__ import annotations

import json

from hypothesis import example, given
from hypothesis import strategies as st
from tests.fuzz.fuzzing import fuzz

from yieldops.landing.events import (
    S3ObjectRef,
    object_refs_from_asset_extras,
    object_refs_from_messages,
    object_refs_from_trigger_payload,
)

scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


def either(good: st.SearchStrategy) -> st.SearchStrategy:
    """A field as AWS writes it, or anything else."""
    return good | json_values


records = st.fixed_dictionaries(
    {
        "eventName": either(st.sampled_from(["ObjectCreated:Put", "ObjectRemoved:Delete"])),
        "s3": either(
            st.fixed_dictionaries(
                {
                    "bucket": either(st.fixed_dictionaries({"name": either(st.text(max_size=12))})),
                    "object": either(
                        st.fixed_dictionaries(
                            {
                                "key": either(st.text(max_size=30)),
                                "size": either(st.integers(0, 2**40)),
                                "eTag": either(st.text(max_size=32)),
                            }
                        )
                    ),
                }
            )
        ),
    }
)
s3_bodies = either(
    st.fixed_dictionaries({"Records": either(st.lists(either(records), max_size=3))})
)


def as_text(values: st.SearchStrategy) -> st.SearchStrategy:
    """JSON values as a body arrives: JSON text, its bytes, or neither."""
    return (
        values.map(json.dumps)
        | values.map(lambda v: json.dumps(v).encode())
        | st.text(max_size=40)
        | st.binary(max_size=40)
        | values
    )


sns = s3_bodies.map(lambda body: {"Type": "Notification", "Message": json.dumps(body)})
bodies = as_text(s3_bodies | sns | json_values)
messages = bodies | st.fixed_dictionaries({"MessageId": st.text(max_size=4), "Body": bodies})
payloads = either(
    st.fixed_dictionaries(
        {"status": st.just("success"), "message_batch": either(st.lists(messages, max_size=4))}
    )
)


def well_formed(refs: list) -> bool:
    return all(
        isinstance(r, S3ObjectRef)
        and isinstance(r.bucket, str)
        and isinstance(r.key, str)
        and (r.size is None or isinstance(r.size, int))
        and (r.etag is None or isinstance(r.etag, str))
        for r in refs
    )


def _event(s3: object) -> str:
    return json.dumps({"Records": [{"eventName": "ObjectCreated:Put", "s3": s3}]})


@fuzz
@given(st.lists(messages | json_values, max_size=5))
# Crashes it found: a size that cannot be hashed (references are made unique), JSON nested
# deeper than the recursion limit, a bucket name that is no string.
@example([_event({"bucket": {"name": "b"}, "object": {"key": "k", "size": [1]}})])
@example(["[" * 100_000 + "]" * 100_000])
@example([_event({"bucket": {"name": 5}, "object": {"key": "k"}})])
def test_any_messages_give_well_formed_refs(batch):
    assert well_formed(object_refs_from_messages(batch))


@fuzz
@given(payloads)
@example({"status": "success", "message_batch": True})  # a crash it found: no list
def test_any_trigger_payload_gives_well_formed_refs(payload):
    if isinstance(payload, dict):
        assert well_formed(object_refs_from_trigger_payload(payload))


@fuzz
@given(
    st.lists(
        either(st.fixed_dictionaries({"from_trigger": st.just(True), "payload": payloads})),
        max_size=3,
    )
)
@example([None])  # a crash it found: an extra that is no mapping
def test_any_asset_extras_give_well_formed_refs(extras):
    assert well_formed(object_refs_from_asset_extras(extras))
