"""Which S3 objects were created, from S3 event notifications as SQS and Airflow hand them over.

The shapes, innermost first:

1. S3 event notification, the body of the SQS message (AWS: "Event message structure")::

       {"Records": [{"eventVersion": "2.1", "eventSource": "aws:s3",
                     "eventName": "ObjectCreated:Put",
                     "s3": {"bucket": {"name": "fab-landing", ...},
                            "object": {"key": "lot+7/w%C3%A91.stdf", "size": 1024,
                                       "eTag": "0123abcd...", ...}}}]}

   The key is URL-encoded with ``+`` for spaces. ``eventName`` is ``ObjectCreated:Put``,
   ``:Post``, ``:Copy`` or ``:CompleteMultipartUpload`` for new objects.
2. The message S3 sends once when a notification configuration is saved::

       {"Service": "Amazon S3", "Event": "s3:TestEvent", "Time": "...", "Bucket": "fab-landing"}

3. Through an SNS topic without raw message delivery, 1 or 2 as a JSON string::

       {"Type": "Notification", "TopicArn": "...", "Message": "{\\"Records\\": [...]}", ...}

4. An SQS message as ``ReceiveMessage`` returns it::

       {"MessageId": "...", "ReceiptHandle": "...", "MD5OfBody": "...", "Body": "<1, 2 or 3>"}

5. The payload of the ``TriggerEvent`` that Airflow's ``SqsSensorTrigger`` (also behind
   ``MessageQueueTrigger(scheme="sqs")``) yields: one poll's messages, already deleted
   from the queue::

       {"status": "success", "message_batch": [<4>, ...]}

6. The ``extra`` of an asset event an ``AssetWatcher`` creates from that trigger event
   (``airflow.models.trigger.Trigger.submit_event``); a DAG run sees it as
   ``triggering_asset_events[asset][i].extra``::

       {"from_trigger": True, "payload": <5>}

Anything else is skipped with a logged warning: the queue is not ours alone to police,
and one bad message must not stop the files named by the others.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote_plus

log = logging.getLogger(__name__)

OBJECT_CREATED = "ObjectCreated:"
TEST_EVENT = "s3:TestEvent"


@dataclass(frozen=True)
class S3ObjectRef:
    """An object an event says was created. ``key`` is the full, decoded object key."""

    bucket: str
    key: str
    size: int | None = None
    etag: str | None = None


def object_refs_from_messages(messages: Iterable[Mapping | str | bytes]) -> list[S3ObjectRef]:
    """The objects created according to SQS messages (4), their bodies (1-3, as JSON text)
    or decoded bodies; in order, each distinct reference once (delivery is at least once)."""
    refs: list[S3ObjectRef] = []
    for message in messages:
        body = _body(message)
        if body is not None:
            refs.extend(_created_objects(body))
    return list(dict.fromkeys(refs))


def object_refs_from_trigger_payload(payload: Mapping) -> list[S3ObjectRef]:
    """The objects named by an ``SqsSensorTrigger`` event payload (5)."""
    batch = payload.get("message_batch") or []
    if not isinstance(batch, list):
        log.warning(
            "skipping a trigger payload whose message_batch is no list: %s", _excerpt(batch)
        )
        return []
    return object_refs_from_messages(batch)


def object_refs_from_asset_extras(extras: Iterable[Mapping]) -> list[S3ObjectRef]:
    """The objects named by asset events an ``AssetWatcher`` on an SQS trigger created (6).

    Pass ``(e.extra for e in triggering_asset_events[asset])``: one DAG run can gather
    several asset events. Events from elsewhere (a task, the REST API) carry no trigger
    payload and name no object.
    """
    refs: list[S3ObjectRef] = []
    for extra in extras:
        payload = extra.get("payload") if isinstance(extra, Mapping) else None
        if isinstance(payload, Mapping):
            refs.extend(object_refs_from_trigger_payload(payload))
        else:
            log.debug("asset event without a trigger payload: %s", _excerpt(extra))
    return list(dict.fromkeys(refs))


def _body(message: Mapping | str | bytes) -> Mapping | None:
    if isinstance(message, Mapping):
        return _parsed(message["Body"]) if "Body" in message else message
    return _parsed(message)


def _parsed(text: Any) -> Mapping | None:
    try:
        value = json.loads(text)
    except (TypeError, ValueError, RecursionError):  # RecursionError: nested too deep
        value = None
    if not isinstance(value, Mapping):
        log.warning("skipping a message that is not a JSON object: %s", _excerpt(text))
        return None
    return value


def _created_objects(body: Mapping) -> list[S3ObjectRef]:
    if isinstance(body.get("Message"), str):  # an SNS notification around the S3 event
        inner = _parsed(body["Message"])
        return _created_objects(inner) if inner is not None else []
    if body.get("Event") == TEST_EVENT:
        log.info("skipping the S3 test event for bucket %s", body.get("Bucket"))
        return []
    records = body.get("Records")
    if not isinstance(records, list):
        log.warning("skipping a message that is not an S3 event: %s", _excerpt(body))
        return []
    refs = (_created_object(record) for record in records)
    return [ref for ref in refs if ref is not None]


def _created_object(record: Any) -> S3ObjectRef | None:
    try:
        if not record["eventName"].startswith(OBJECT_CREATED):
            return None
        s3 = record["s3"]
        ref = S3ObjectRef(
            bucket=s3["bucket"]["name"],
            key=unquote_plus(s3["object"]["key"]),
            size=s3["object"].get("size"),
            etag=s3["object"].get("eTag"),
        )
    except (KeyError, TypeError, AttributeError):
        ref = None
    if ref is None or not _well_typed(ref):
        log.warning("skipping a malformed S3 event record: %s", _excerpt(record))
        return None
    return ref


def _well_typed(ref: S3ObjectRef) -> bool:
    return (
        isinstance(ref.bucket, str)
        and isinstance(ref.key, str)
        and (ref.size is None or (isinstance(ref.size, int) and not isinstance(ref.size, bool)))
        and (ref.etag is None or isinstance(ref.etag, str))
    )


def _excerpt(value: Any, limit: int = 200) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."
