"""The S3 landing zone's side of hostile entries, against a local moto server: objects that
cannot be read (archived in Glacier) are rejected once and never block the others; keys too
long for the quarantine prefix are shortened, or rejected where nothing fits."""

from __future__ import annotations

import json
import uuid

import pytest

from yieldops.completeness import HANDED_OVER
from yieldops.ingest import ingest_file
from yieldops.landing.claims import claim_files, pending_files
from yieldops.landing.ledger import QUARANTINED, REJECTED, Ledger
from yieldops.landing.s3 import KEY_MAX, S3LandingZone
from yieldops.landing.zones import RejectedEntry
from yieldops.synth import synthesize


@pytest.fixture(scope="module")
def lots(tmp_path_factory) -> list[bytes]:
    out = tmp_path_factory.mktemp("lots")
    return [path.read_bytes() for path in synthesize(out, lots=3, wafers_per_lot=1, seed=9)]


@pytest.fixture
def bucket(s3_client) -> str:
    name = f"yieldops-{uuid.uuid4().hex[:12]}"
    s3_client.create_bucket(Bucket=name)
    return name


@pytest.fixture
def ledger(tmp_path):
    ledger = Ledger(f"sqlite:///{tmp_path / 'ledger.db'}")
    yield ledger
    ledger.close()


def test_an_archived_object_is_rejected_once_and_the_others_are_claimed(
    s3_client, bucket, ledger, lots
):
    s3_client.put_object(Bucket=bucket, Key="landing/good.stdf", Body=lots[0])
    s3_client.put_object(
        Bucket=bucket, Key="landing/archived.stdf", Body=lots[1], StorageClass="GLACIER"
    )
    zone = _OpenCountingZone(f"s3://{bucket}/landing", s3_client)

    first = claim_files(zone, ledger, "run-1")

    assert [f.key for f in first.claimed] == ["good.stdf"]
    (rejected,) = first.rejected
    assert rejected.key == "archived.stdf" and "InvalidObjectState" in rejected.reason
    (entry,) = ledger.entries([REJECTED])
    assert (entry.source_key, entry.dag_run_id, entry.size) == (
        "archived.stdf",
        "run-1",
        len(lots[1]),
    )
    zone.opened.clear()
    assert claim_files(zone, ledger, "run-2").rejected == []
    assert zone.opened == []  # not even tried again
    assert [e.key for e in pending_files(zone, ledger)] == ["good.stdf"]  # claimed, not done

    # Uploaded again, readable: a new version, claimed like any file.
    s3_client.put_object(Bucket=bucket, Key="landing/archived.stdf", Body=lots[2])
    assert [f.key for f in claim_files(zone, ledger, "run-3").claimed] == ["archived.stdf"]


class _OpenCountingZone(S3LandingZone):
    """The S3 zone, noting the keys it opens."""

    def __init__(self, url: str, client) -> None:
        super().__init__(url, client)
        self.opened: list[str] = []

    def open(self, key: str):
        self.opened.append(key)
        return super().open(key)


def test_a_key_too_long_for_the_quarantine_prefix_is_shortened(
    s3_client, bucket, ledger, lots, tmp_path
):
    # Landing keys of S3's full 1024 bytes; under the longer quarantine/ prefix, with
    # .reason.json, they would not fit. Two of them, differing only at their ends.
    filler = "w" * (KEY_MAX - len("in/lot-7/-a.stdf"))
    keys = [f"lot-7/{filler}-{end}.stdf" for end in ("a", "b")]
    for cut, key in enumerate(keys, start=20_000):  # cut short: bad data, to quarantine
        s3_client.put_object(Bucket=bucket, Key=f"in/{key}", Body=lots[0][:cut])
    zone = S3LandingZone(f"s3://{bucket}/in", s3_client)

    report = claim_files(zone, ledger, "run-1")
    assert sorted(f.key for f in report.claimed) == keys and report.rejected == []

    targets = set()
    for claimed in report.claimed:
        outcome = ingest_file(
            claimed, zone, ledger, "run-1", curated_dir=tmp_path / "curated", rules=HANDED_OVER
        )
        assert outcome.status == QUARANTINED
        target = outcome.location.removeprefix(f"s3://{bucket}/")
        assert target.startswith("quarantine/lot-7/www") and target.endswith(".stdf")
        assert len(f"{target}.reason.json".encode()) <= KEY_MAX
        reason = s3_client.get_object(Bucket=bucket, Key=f"{target}.reason.json")["Body"].read()
        assert json.loads(reason)["key"] == claimed.key
        targets.add(target)
    assert len(targets) == 2


def test_a_quarantine_prefix_that_leaves_no_room_rejects_the_key(s3_client, bucket):
    prefix = "p" * (KEY_MAX - 30)
    s3_client.put_object(Bucket=bucket, Key=f"{prefix}/in/lot-12.stdf", Body=b"x")
    zone = S3LandingZone(f"s3://{bucket}/{prefix}/in", s3_client)

    (entry,) = zone.list_entries()

    assert isinstance(entry, RejectedEntry) and entry.key == "lot-12.stdf"
    assert "too long for the quarantine" in entry.reason
    assert list(zone.list_files()) == []
