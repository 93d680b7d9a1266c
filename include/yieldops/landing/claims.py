"""Claiming landed files for a run: the exactly-once half of ingest.

``claim_files`` finds the files of a landing zone the ledger has not finished
and claims them for one DAG run; ``pending_files`` tells, without hashing,
whether there is anything to claim (what the sensor waits for).
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from datetime import datetime, timezone

from .ledger import FINAL, Ledger, WaitingFile
from .zones import LandedFile, LandingZone

log = logging.getLogger(__name__)
_HASH_CHUNK = 1 << 20


@dataclass(frozen=True)
class ClaimedFile:
    """A file a run holds in the ledger; plain values so it travels through XCom."""

    sha256: str
    key: str
    size: int
    zone_url: str
    modified: str | None = None  # ISO time of the last change the listing showed

    @property
    def modified_at(self) -> datetime | None:
        return datetime.fromisoformat(self.modified) if self.modified else None


@dataclass
class ClaimReport:
    claimed: list[ClaimedFile] = field(default_factory=list)
    would_claim: list[ClaimedFile] = field(default_factory=list)  # dry run
    duplicates: list[str] = field(default_factory=list)  # keys whose bytes landed under another key
    already_done: int = 0
    waiting: list[WaitingFile] = field(default_factory=list)  # not complete, not due yet
    superseded: list[str] = field(default_factory=list)  # waiting bytes no longer landed


def sha256_of(zone: LandingZone, key: str) -> str:
    digest = hashlib.sha256()
    with zone.open(key) as stream:
        while chunk := stream.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def landed_by_content(zone: LandingZone, ledger: Ledger) -> dict[str, list[LandedFile]]:
    """Files in the zone grouped by content hash; each key version is hashed only once."""
    known = ledger.source_hashes(zone.url)
    by_sha: dict[str, list[LandedFile]] = {}
    for landed in zone.list_files():
        sha = known.get((landed.key, landed.version))
        if sha is None:
            sha = sha256_of(zone, landed.key)
            ledger.record_source(zone.url, landed.key, landed.version, sha)
        by_sha.setdefault(sha, []).append(landed)
    return by_sha


def claim_files(
    zone: LandingZone,
    ledger: Ledger,
    run_id: str,
    *,
    reprocess_key: str | None = None,
    reprocess_lot: str | None = None,
    dry_run: bool = False,
) -> ClaimReport:
    """Claim every landed file the ledger has not finished (and any asked to be reprocessed)."""
    by_sha = landed_by_content(zone, ledger)
    reprocess = set()
    if reprocess_key:
        reprocess |= set(ledger.sha256_of(key=reprocess_key))
    if reprocess_lot:
        reprocess |= set(ledger.sha256_of(lot_id=reprocess_lot))
    statuses = ledger.statuses(by_sha)
    report = ClaimReport()
    waiting = ledger.waiting(zone.url)
    if not dry_run:
        report.superseded = supersede_unlanded(ledger, waiting, by_sha)
    now = datetime.now(timezone.utc)
    for sha, copies in sorted(by_sha.items(), key=lambda item: item[1][0].key):
        first, *others = sorted(copies, key=lambda f: f.key)
        report.duplicates.extend(f.key for f in others)
        if statuses.get(sha) in FINAL and sha not in reprocess:
            report.already_done += 1
            continue
        modified = max(f.modified for f in copies)
        if sha in waiting and not waiting[sha].due(now, modified):
            report.waiting.append(waiting[sha])
            continue
        candidate = ClaimedFile(sha, first.key, first.size, zone.url, modified.isoformat())
        if dry_run:
            report.would_claim.append(candidate)
        elif ledger.claim(
            sha,
            source_key=first.key,
            zone_url=zone.url,
            size=first.size,
            run_id=run_id,
            reprocess=sha in reprocess,
        ):
            report.claimed.append(candidate)
    missing = reprocess - set(by_sha)
    if missing:
        log.warning("asked to reprocess %d file(s) no longer in %s", len(missing), zone.url)
    return report


def supersede_unlanded(
    ledger: Ledger, waiting: dict[str, WaitingFile], by_sha: dict[str, list[LandedFile]]
) -> list[str]:
    """Close the waiting files whose bytes are landed no more (appended to, overwritten or
    removed): the newer bytes are a file of their own. Returns their keys."""
    keys_now = {f.key: sha for sha, copies in by_sha.items() for f in copies}
    reasons = {
        sha: (
            f"superseded by newer bytes under its key ({keys_now[w.source_key][:12]}) "
            "before it was complete"
            if w.source_key in keys_now
            else "superseded: no longer in the landing zone before it was complete"
        )
        for sha, w in waiting.items()
        if sha not in by_sha
    }
    ledger.supersede(reasons)
    return sorted(waiting[sha].source_key for sha in reasons)


def pending_files(zone: LandingZone, ledger: Ledger) -> list[LandedFile]:
    """Landed files that are new, changed, or not finished in the ledger (waiting files only
    once their time to be looked at again has come)."""
    known = ledger.source_hashes(zone.url)
    landed = list(zone.list_files())
    statuses = ledger.statuses({sha for sha in known.values()})
    waiting = ledger.waiting(zone.url)
    now = datetime.now(timezone.utc)
    return [
        f
        for f in landed
        if statuses.get(sha := known.get((f.key, f.version), "")) not in FINAL
        and (sha not in waiting or waiting[sha].due(now, f.modified))
    ]
