"""Claiming landed files for a run: the exactly-once half of ingest.

``claim_files`` finds the files of a landing zone the ledger has not finished
and claims them for one DAG run; ``pending_files`` tells, without hashing,
whether there is anything to claim (what the sensor waits for).

Entries that cannot be ingested as files (``RejectedEntry``: a link out of the landing
root, a pipe, an object that cannot be read...) are recorded once as rejected and never
stop the files beside them from being claimed. Hashing stops starting new files past a
time limit; the rest waits for the next run.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from .ledger import FINAL, Ledger, WaitingFile, rejected_key
from .zones import EntryProblem, LandedFile, LandingZone, RejectedEntry

log = logging.getLogger(__name__)
_HASH_CHUNK = 1 << 20
# Hashing runs at about 100 MB/s from S3 and faster locally: ten minutes hash a backlog
# of tens of GB, and the claim task's execution_timeout leaves room for the last file.
DEFAULT_CLAIM_TIME_LIMIT = timedelta(minutes=10)


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
    # Entries recorded as rejected by this claim (in a dry run: that would be).
    rejected: list[RejectedEntry] = field(default_factory=list)
    left_for_next_run: list[str] = field(default_factory=list)  # not hashed: past the time limit


@dataclass
class HashedFiles:
    by_sha: dict[str, list[LandedFile]]
    unreadable: list[RejectedEntry]  # could not be read as files
    not_hashed: list[str]  # keys left for the next run by the time limit


def sha256_of(zone: LandingZone, key: str) -> str:
    digest = hashlib.sha256()
    with zone.open(key) as stream:
        while chunk := stream.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def landed_by_content(
    zone: LandingZone, ledger: Ledger, files: Iterable[LandedFile], *, deadline: float
) -> HashedFiles:
    """Files grouped by content hash; each key version is hashed only once, and none is
    started past ``deadline`` (``time.monotonic()``) but the first, so every run progresses.
    A version that could not be read before is not tried again."""
    known = ledger.source_hashes(zone.url)
    unknown = [f for f in files if (f.key, f.version) not in known]
    unreadable_before = set(ledger.statuses(_unreadable_key(zone, f) for f in unknown))
    hashed = HashedFiles(by_sha={}, unreadable=[], not_hashed=[])
    started = 0
    for landed in files:
        sha = known.get((landed.key, landed.version))
        if sha is None:
            if _unreadable_key(zone, landed) in unreadable_before:
                continue
            if started and time.monotonic() >= deadline:
                hashed.not_hashed.append(landed.key)
                continue
            started += 1
            try:
                sha = sha256_of(zone, landed.key)
            except FileNotFoundError:
                continue  # gone since the listing
            except OSError as exc:  # no permission, an I/O error: this file, not the others
                reason = f"cannot be read: {exc.strerror or exc}"
                hashed.unreadable.append(_unreadable(landed, reason))
                continue
            except EntryProblem as problem:
                hashed.unreadable.append(_unreadable(landed, str(problem)))
                continue
            ledger.record_source(zone.url, landed.key, landed.version, sha)
        hashed.by_sha.setdefault(sha, []).append(landed)
    if hashed.not_hashed:
        log.warning(
            "claim time limit reached after hashing %d file(s): %d left for the next run",
            started,
            len(hashed.not_hashed),
        )
    return hashed


def _unreadable(landed: LandedFile, reason: str) -> RejectedEntry:
    return RejectedEntry(landed.key, reason, size=landed.size, version=_read_version(landed))


def _unreadable_key(zone: LandingZone, landed: LandedFile) -> str:
    """The ledger key this version of a file has if it could not be read."""
    return rejected_key(zone.url, landed.key, _version_identity(_read_version(landed)))


def _read_version(landed: LandedFile) -> str:
    # With the modification time: an S3 object uploaded again with the same bytes (from
    # Glacier to a readable storage class) keeps its ETag but is another try.
    return f"{landed.version} {landed.modified.isoformat()}"


def _version_identity(version: str) -> str:
    return f"version {version}"


def ledger_key(zone: LandingZone, entry: RejectedEntry) -> str:
    """The ledger key of a rejected entry: by its version when it could not be read, by its
    reason when the listing rejected it (see ``rejected_key``)."""
    identity = entry.reason if entry.version is None else _version_identity(entry.version)
    return rejected_key(zone.url, entry.key, identity)


def record_rejected(
    zone: LandingZone, ledger: Ledger, entries: list[RejectedEntry], run_id: str, *, dry_run: bool
) -> list[RejectedEntry]:
    """Record each entry as rejected, once; returns those new to the ledger (in a dry run,
    those that would be, recording nothing)."""
    if dry_run:
        known = ledger.statuses(ledger_key(zone, e) for e in entries)
        return [e for e in entries if ledger_key(zone, e) not in known]
    new = [
        e
        for e in entries
        if ledger.reject(
            ledger_key(zone, e),
            source_key=e.key,
            zone_url=zone.url,
            size=e.size,
            reason=e.reason,
            run_id=run_id,
        )
    ]
    for entry in new:
        log.warning("rejected %s: %s", entry.key, entry.reason)
    return new


def claim_files(
    zone: LandingZone,
    ledger: Ledger,
    run_id: str,
    *,
    reprocess_key: str | None = None,
    reprocess_lot: str | None = None,
    dry_run: bool = False,
    time_limit: timedelta = DEFAULT_CLAIM_TIME_LIMIT,
) -> ClaimReport:
    """Claim every landed file the ledger has not finished (and any asked to be reprocessed);
    record the entries that are no files as rejected. Past ``time_limit``, no new file is
    hashed: the rest is left for the next run."""
    entries = list(zone.list_entries())
    hashed = landed_by_content(
        zone,
        ledger,
        [e for e in entries if isinstance(e, LandedFile)],
        deadline=time.monotonic() + time_limit.total_seconds(),
    )
    problems = [e for e in entries if isinstance(e, RejectedEntry)] + hashed.unreadable
    by_sha = hashed.by_sha
    reprocess = set()
    if reprocess_key:
        reprocess |= set(ledger.sha256_of(key=reprocess_key))
    if reprocess_lot:
        reprocess |= set(ledger.sha256_of(lot_id=reprocess_lot))
    statuses = ledger.statuses(by_sha)
    report = ClaimReport(
        rejected=record_rejected(zone, ledger, problems, run_id, dry_run=dry_run),
        left_for_next_run=hashed.not_hashed,
    )
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


def pending_files(zone: LandingZone, ledger: Ledger) -> list[LandedFile | RejectedEntry]:
    """Landed files that are new, changed, or not finished in the ledger (waiting files only
    once their time to be looked at again has come), and entries that are no files until
    they are recorded as rejected."""
    known = ledger.source_hashes(zone.url)
    waiting = ledger.waiting(zone.url)
    now = datetime.now(timezone.utc)

    def key_of(entry: LandedFile | RejectedEntry) -> str:
        if isinstance(entry, RejectedEntry):
            return ledger_key(zone, entry)
        return known.get((entry.key, entry.version)) or _unreadable_key(zone, entry)

    def due(key: str, entry: LandedFile | RejectedEntry) -> bool:
        return key not in waiting or (
            isinstance(entry, LandedFile) and waiting[key].due(now, entry.modified)
        )

    entries = [(key_of(e), e) for e in zone.list_entries()]
    statuses = ledger.statuses({key for key, _ in entries})
    return [entry for key, entry in entries if statuses.get(key) not in FINAL and due(key, entry)]
