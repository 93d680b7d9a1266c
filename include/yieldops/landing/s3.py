"""An S3 prefix as a landing zone, over a boto3 S3 client the caller provides.

Airflow code passes ``S3Hook(aws_conn_id).get_conn()``; tests pass a client for a
local moto server. Nothing here imports Airflow.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from typing import Any, BinaryIO
from urllib.parse import urlsplit

from .zones import (
    QUARANTINE,
    REASON_SUFFIX,
    EntryProblem,
    LandedFile,
    RejectedEntry,
    is_stdf_name,
    shortened_name,
)

# Reads of the HTTP body are this size at least; the STDF reader asks for 8 MiB at a time.
READ_BUFFER_SIZE = 1 << 20
KEY_MAX = 1024  # bytes of UTF-8 in an S3 object key
# Errors that say this object cannot be read as it is (no permission; archived in Glacier or
# Deep Archive and not restored), not that S3 is unreachable: not retried until it changes.
UNREADABLE_OBJECT_ERRORS = ("AccessDenied", "InvalidObjectState")


class S3LandingZone:
    """Files under ``s3://bucket/prefix``; keys are relative to the prefix."""

    def __init__(self, url: str, client: Any) -> None:
        if client is None:
            raise ValueError(f"an S3 landing zone needs a boto3 S3 client ({url})")
        self.bucket, self.prefix = _split_s3_url(url)
        self.quarantine_prefix = _sibling_quarantine(self.prefix)
        self.url = f"s3://{self.bucket}/{self.prefix}".rstrip("/")
        self.client = client

    def list_files(self) -> Iterator[LandedFile]:
        return (e for e in self.list_entries() if isinstance(e, LandedFile))

    def list_entries(self) -> Iterator[LandedFile | RejectedEntry]:
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=self.prefix):
            for item in page.get("Contents", []):
                key = item["Key"][len(self.prefix) :]
                if not _is_landed_name(key):
                    continue
                try:
                    self.quarantine_key(key)
                except EntryProblem as problem:
                    yield RejectedEntry(key, str(problem), size=item["Size"])
                    continue
                yield LandedFile(
                    key=key,
                    size=item["Size"],
                    version=_unquoted(item["ETag"]),
                    modified=item["LastModified"],
                )

    def open(self, key: str) -> BinaryIO:
        """The object's bytes, streamed from the HTTP response as they are read."""
        try:
            response = self.client.get_object(Bucket=self.bucket, Key=self.prefix + key)
        except self.client.exceptions.NoSuchKey as exc:
            raise FileNotFoundError(f"no such object {self.uri(key)}") from exc
        except self.client.exceptions.ClientError as exc:
            error = exc.response.get("Error", {})
            if error.get("Code") in UNREADABLE_OBJECT_ERRORS:
                raise EntryProblem(
                    f"cannot be read: {error['Code']} ({error.get('Message', '')})"
                ) from exc
            raise
        raw = _ObjectStream(response["Body"], name=self.uri(key))
        # BufferedReader adds peek() (the reader sniffs gzip/bz2 magic with it) and a
        # context manager that closes the body, not botocore's raw urllib3 response.
        return io.BufferedReader(raw, buffer_size=READ_BUFFER_SIZE)

    def quarantine(self, key: str, reason: dict) -> str:
        target = self.quarantine_key(key)
        # Server-side copy: the bytes never travel through this process. copy_object
        # takes objects up to 5 GB, far above any STDF file.
        self.client.copy_object(
            Bucket=self.bucket,
            Key=target,
            CopySource={"Bucket": self.bucket, "Key": self.prefix + key},
        )
        self.client.put_object(
            Bucket=self.bucket,
            Key=f"{target}{REASON_SUFFIX}",
            Body=json.dumps(reason, indent=2).encode(),
            ContentType="application/json",
        )
        return f"s3://{self.bucket}/{target}"

    def quarantine_key(self, key: str) -> str:
        """``<quarantine prefix><key>``, the key shortened (hash kept) so that its reason
        object's key fits KEY_MAX; EntryProblem when the quarantine prefix leaves no room."""
        room = KEY_MAX - len(self.quarantine_prefix.encode()) - len(REASON_SUFFIX)
        try:
            return self.quarantine_prefix + shortened_name(key, room, key)
        except EntryProblem as exc:
            message = f"too long for the quarantine {self.quarantine_prefix}: {exc}"
            raise EntryProblem(message) from exc

    def uri(self, key: str) -> str:
        return f"s3://{self.bucket}/{self.prefix}{key}"

    def zone_key(self, bucket: str, object_key: str) -> str | None:
        """The zone key of an object named by an S3 event, or None when the object is not a
        landed STDF file of this zone (other bucket, outside the prefix, quarantine, other
        file type). Quarantining copies objects, so the zone's own copies raise events too."""
        if bucket != self.bucket or not object_key.startswith(self.prefix):
            return None
        key = object_key[len(self.prefix) :]
        return key if _is_landed_name(key) else None


class _ObjectStream(io.RawIOBase):
    """A botocore ``StreamingBody`` as a raw stream, for ``io.BufferedReader`` to wrap.

    ``StreamingBody.readinto`` checks the length against Content-Length at the end, so a
    cut connection raises instead of looking like a short file.
    """

    def __init__(self, body: Any, name: str) -> None:
        self._body = body
        self.name = name  # the STDF reader names the file by it in error messages

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        return self._body.readinto(buffer)

    def close(self) -> None:
        if not self.closed:
            self._body.close()
        super().close()


def _split_s3_url(url: str) -> tuple[str, str]:
    """``s3://bucket/a/b/`` -> ``("bucket", "a/b/")``; the prefix is empty or ends in ``/``."""
    parts = urlsplit(url)
    if parts.scheme != "s3" or not parts.netloc:
        raise ValueError(f"not an S3 URL: {url!r} (expected s3://bucket/prefix)")
    prefix = parts.path.strip("/")
    return parts.netloc, f"{prefix}/" if prefix else ""


def _sibling_quarantine(prefix: str) -> str:
    """``fab/landing/`` -> ``fab/quarantine/``: outside the landing prefix, so notifications
    filtered on that prefix never fire for quarantine copies (``quarantine/`` at the root)."""
    parent = prefix.rstrip("/").rpartition("/")[0]
    return f"{parent}/{QUARANTINE}/" if parent else f"{QUARANTINE}/"


def _is_landed_name(key: str) -> bool:
    """STDF files outside quarantine; hidden names are skipped, as in the local zone."""
    parts = key.split("/")
    return (
        is_stdf_name(key)
        and parts[0] != QUARANTINE
        and not any(part.startswith(".") for part in parts)
    )


def _unquoted(etag: str) -> str:
    # S3 lists ETags in quotes; event notifications carry them bare. One form for both.
    return etag.strip('"')


def send_new_objects_to_queue(s3: Any, sqs: Any, bucket: str, prefix: str, queue: str) -> str:
    """Create queue ``queue`` and make the bucket notify it of every object created under
    ``prefix`` (the events mode's wiring); returns the queue's URL."""
    queue_url = sqs.create_queue(QueueName=queue)["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])
    s3.put_bucket_notification_configuration(
        Bucket=bucket,
        NotificationConfiguration={
            "QueueConfigurations": [
                {
                    "QueueArn": arn["Attributes"]["QueueArn"],
                    "Events": ["s3:ObjectCreated:*"],
                    "Filter": {"Key": {"FilterRules": [{"Name": "prefix", "Value": prefix}]}},
                }
            ]
        },
    )
    return queue_url
