"""The ledger of landed files: the source of truth for "processed exactly once".

Files are keyed by the SHA-256 of their bytes, so the same bytes uploaded
twice, or under a new name, are one entry. A claim is one atomic statement
(insert-if-absent, or a conditional update), so two concurrent runs never
take the same file. SQLite by default, PostgreSQL (or any SQLAlchemy URL) in
production.

A file is also known by its decoded content: the SHA-256 of its STDF bytes once
decompressed (``yieldops_landed_contents``), so the same lot landed as ``x.stdf.gz`` and
as ``x.stdf`` is curated once; the second ends ``duplicate``, naming the first. The
bytes' hash stays the key of a claim (it is known before decoding, from a listing and
one read); the content's hash is known only once the file is decoded, so ingest takes
the content (:meth:`Ledger.take_content`) before it curates.

An entry of the landing zone that cannot be ingested as a file (a symbolic link out of
the landing root, a pipe, a name that is not UTF-8, an object that cannot be read) has no
bytes to hash: it is recorded once as ``rejected`` under :func:`rejected_key`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    and_,
    or_,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine

from ..database import engine_with_tables

CLAIMED, CURATED, QUARANTINED, FAILED = "claimed", "curated", "quarantined", "failed"
DUPLICATE = "duplicate"  # the same decoded content as a file landed before
REJECTED = "rejected"  # an entry that cannot be ingested as a file (see rejected_key)
FINAL = (CURATED, QUARANTINED, DUPLICATE, REJECTED)
# Not complete yet (still being written): looked at again from its time in yieldops_landed_waits.
WAITING = "waiting"
# An earlier version of a key: bytes that waited and are no longer landed (their key holds
# newer bytes, or is gone), or curated data replaced by new content under the same key. Never
# looked at again unless the same bytes land again.
SUPERSEDED = "superseded"
# A claim older than this whose run never finished it (worker lost) may be taken again.
DEFAULT_STALE_CLAIM = timedelta(hours=2)

metadata = MetaData()

landed_files = Table(
    "yieldops_landed_files",
    metadata,
    Column("sha256", String(64), primary_key=True),
    Column("source_key", Text, nullable=False),
    Column("zone_url", Text, nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("status", String(16), nullable=False, index=True),
    Column("reason", Text),
    Column("attempts", Integer, nullable=False, default=1),
    Column("dag_run_id", Text),
    Column("product", Text),
    Column("lot_id", Text, index=True),
    Column("output", Text),
    Column("first_seen_at", DateTime(timezone=True), nullable=False),
    Column("claimed_at", DateTime(timezone=True)),
    Column("finished_at", DateTime(timezone=True)),
)

# Every (zone, key, version) seen, so a key is hashed once per version and
# a duplicate upload under another name is recorded against its content.
landed_sources = Table(
    "yieldops_landed_sources",
    metadata,
    Column("zone_url", Text, primary_key=True),
    Column("source_key", Text, primary_key=True),
    Column("version", Text, primary_key=True),
    Column("sha256", String(64), nullable=False, index=True),
    Column("seen_at", DateTime(timezone=True), nullable=False),
)


# The decoded content of each landed file, and the file (bytes hash) that took it first.
landed_contents = Table(
    "yieldops_landed_contents",
    metadata,
    Column("content_sha256", String(64), primary_key=True),
    Column("sha256", String(64), nullable=False),
    Column("taken_at", DateTime(timezone=True), nullable=False),
)


# The chain of versions of a landed key: each curated file replaced by new bytes under its key.
superseded_files = Table(
    "yieldops_superseded_files",
    metadata,
    Column("sha256", String(64), primary_key=True),
    Column("superseded_by", String(64), nullable=False, index=True),
    Column("dag_run_id", Text),
    Column("superseded_at", DateTime(timezone=True), nullable=False),
)


# When each waiting file is looked at again, and when its bytes last changed. A table of its
# own: create_all adds tables to a deployed ledger, never columns.
landed_waits = Table(
    "yieldops_landed_waits",
    metadata,
    Column("sha256", String(64), primary_key=True),
    Column("recheck_at", DateTime(timezone=True), nullable=False),
    Column("modified_at", DateTime(timezone=True), nullable=False),
)


@dataclass(frozen=True)
class WaitingFile:
    """A landed file that is not complete yet, and when it is looked at again."""

    sha256: str
    source_key: str
    reason: str | None
    recheck_at: datetime
    modified_at: datetime

    def due(self, now: datetime, modified: datetime) -> bool:
        """Whether to look at it again: its time has come, or the landing zone shows another
        modification time than it had (touched, or rewritten with the same bytes)."""
        return self.recheck_at <= now or modified != self.modified_at


@dataclass(frozen=True)
class LedgerEntry:
    sha256: str
    source_key: str
    zone_url: str
    size: int
    status: str
    reason: str | None
    attempts: int
    dag_run_id: str | None
    product: str | None
    lot_id: str | None
    output: str | None
    first_seen_at: datetime
    claimed_at: datetime | None
    finished_at: datetime | None


def rejected_key(zone_url: str, source_key: str, identity: str) -> str:
    """The ledger key of a rejected entry: the SHA-256 of ``rejected``, its zone URL, its key
    and its identity, NUL-separated. The identity is what must change for the entry to be
    recorded again: the reason for an entry the listing rejects (a link re-pointed elsewhere
    has another reason), the version for one that could not be read (a new upload is
    tried again). Rejected entries are never in ``yieldops_landed_sources``, so no
    reprocessing takes them."""
    text = "\0".join(("rejected", zone_url, source_key, identity))
    return hashlib.sha256(text.encode()).hexdigest()


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _utc(moment: datetime) -> datetime:
    """SQLite gives back naive datetimes; every time stored here is UTC."""
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def _insert(engine: Engine):
    """An INSERT that can skip rows whose key exists (ON CONFLICT DO NOTHING)."""
    return {"postgresql": postgresql.insert, "sqlite": sqlite.insert}[engine.dialect.name]


class Ledger:
    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = engine_with_tables(url, metadata, shared=True)

    def close(self) -> None:
        self.engine.dispose()

    # -- what has been seen ------------------------------------------------------------------

    def source_hashes(self, zone_url: str) -> dict[tuple[str, str], str]:
        """Content hash of every (key, version) of a zone already seen."""
        query = select(
            landed_sources.c.source_key, landed_sources.c.version, landed_sources.c.sha256
        ).where(landed_sources.c.zone_url == zone_url)
        with self.engine.connect() as conn:
            return {(key, version): sha for key, version, sha in conn.execute(query)}

    def record_source(self, zone_url: str, key: str, version: str, sha256: str) -> None:
        statement = (
            _insert(self.engine)(landed_sources)
            .values(
                zone_url=zone_url, source_key=key, version=version, sha256=sha256, seen_at=_now()
            )
            .on_conflict_do_nothing()
        )
        with self.engine.begin() as conn:
            conn.execute(statement)

    # -- claims ------------------------------------------------------------------------------

    def _new_entry(
        self,
        sha256: str,
        source_key: str,
        zone_url: str,
        size: int,
        status: str,
        run_id: str,
        now: datetime,
        **values: object,
    ):
        """An insert of a first entry that does nothing when the key is in the ledger."""
        return (
            _insert(self.engine)(landed_files)
            .values(
                sha256=sha256,
                source_key=source_key,
                zone_url=zone_url,
                size=size,
                status=status,
                attempts=1,
                dag_run_id=run_id,
                first_seen_at=now,
                **values,
            )
            .on_conflict_do_nothing()
        )

    def claim(
        self,
        sha256: str,
        *,
        source_key: str,
        zone_url: str,
        size: int,
        run_id: str,
        reprocess: bool = False,
        stale_after: timedelta = DEFAULT_STALE_CLAIM,
    ) -> bool:
        """Take a file for ``run_id``; False when it is done or another run holds it.

        New content is inserted as claimed. Known content is taken only when
        it failed before, when its claim is stale, when it waits (the caller takes it only
        once it is due), when it was superseded and landed again, or, with ``reprocess``,
        when it was curated or quarantined.
        """
        now = _now()
        insert = self._new_entry(
            sha256, source_key, zone_url, size, CLAIMED, run_id, now, claimed_at=now
        )
        takeable = [
            landed_files.c.status == FAILED,
            and_(landed_files.c.status == CLAIMED, landed_files.c.claimed_at < now - stale_after),
            landed_files.c.status == WAITING,  # claim_files takes it only when due
            landed_files.c.status == SUPERSEDED,  # its bytes landed again
        ]
        if reprocess:
            takeable.append(landed_files.c.status.in_(FINAL))
        retake = (
            update(landed_files)
            .where(landed_files.c.sha256 == sha256, or_(*takeable))
            .values(
                status=CLAIMED,
                attempts=landed_files.c.attempts + 1,
                dag_run_id=run_id,
                claimed_at=now,
                reason=None,
                finished_at=None,
            )
        )
        # RETURNING tells reliably whether a row was written (rowcount is not, for inserts).
        with self.engine.begin() as conn:
            if conn.execute(insert.returning(landed_files.c.sha256)).first():
                return True
            return conn.execute(retake.returning(landed_files.c.sha256)).first() is not None

    def finish(
        self,
        sha256: str,
        run_id: str,
        status: str,
        *,
        reason: str | None = None,
        output: str | None = None,
        product: str | None = None,
        lot_id: str | None = None,
    ) -> bool:
        """Record the outcome of a claim held by ``run_id``; False if the run no longer holds it."""
        if status not in (*FINAL, FAILED):
            raise ValueError(f"not a final status: {status!r}")
        statement = (
            update(landed_files)
            .where(
                landed_files.c.sha256 == sha256,
                landed_files.c.dag_run_id == run_id,
                landed_files.c.status == CLAIMED,
            )
            .values(
                status=status,
                reason=reason,
                output=output,
                product=product,
                lot_id=lot_id,
                finished_at=_now(),
            )
        )
        with self.engine.begin() as conn:
            return conn.execute(statement.returning(landed_files.c.sha256)).first() is not None

    def wait(
        self,
        sha256: str,
        run_id: str,
        *,
        reason: str,
        recheck_at: datetime,
        modified_at: datetime,
        product: str | None = None,
        lot_id: str | None = None,
    ) -> bool:
        """End a claim held by ``run_id`` as waiting (not complete yet): the file is claimed
        again from ``recheck_at``, or sooner as new bytes. False if the run no longer holds it."""
        held = update(landed_files).where(
            landed_files.c.sha256 == sha256,
            landed_files.c.dag_run_id == run_id,
            landed_files.c.status == CLAIMED,
        )
        times = {"recheck_at": recheck_at, "modified_at": modified_at}
        upsert = _insert(self.engine)(landed_waits).values(sha256=sha256, **times)
        with self.engine.begin() as conn:
            done = conn.execute(
                held.values(
                    status=WAITING,
                    reason=reason,
                    product=product,
                    lot_id=lot_id,
                    finished_at=_now(),
                ).returning(landed_files.c.sha256)
            ).first()
            if done:
                conn.execute(upsert.on_conflict_do_update(index_elements=["sha256"], set_=times))
            return done is not None

    def waiting(self, zone_url: str) -> dict[str, WaitingFile]:
        """The zone's waiting files by bytes hash."""
        query = (
            select(
                landed_files.c.sha256,
                landed_files.c.source_key,
                landed_files.c.reason,
                landed_waits.c.recheck_at,
                landed_waits.c.modified_at,
            )
            .join(landed_waits, landed_waits.c.sha256 == landed_files.c.sha256)
            .where(landed_files.c.zone_url == zone_url, landed_files.c.status == WAITING)
        )
        with self.engine.connect() as conn:
            return {
                sha: WaitingFile(sha, key, reason, _utc(recheck), _utc(modified))
                for sha, key, reason, recheck, modified in conn.execute(query)
            }

    def supersede(self, reasons: dict[str, str]) -> None:
        """Close waiting files whose bytes are no longer landed, each with its reason."""
        with self.engine.begin() as conn:
            for sha, reason in reasons.items():
                conn.execute(
                    update(landed_files)
                    .where(landed_files.c.sha256 == sha, landed_files.c.status == WAITING)
                    .values(status=SUPERSEDED, reason=reason, finished_at=_now())
                )

    def reject(
        self, key: str, *, source_key: str, zone_url: str, size: int, reason: str, run_id: str
    ) -> bool:
        """Record an entry as rejected by ``run_id`` under ``key`` (:func:`rejected_key`);
        False when it is recorded already, so each is recorded (and reported) once."""
        now = _now()
        statement = self._new_entry(
            key, source_key, zone_url, size, REJECTED, run_id, now, reason=reason, finished_at=now
        )
        with self.engine.begin() as conn:
            return conn.execute(statement.returning(landed_files.c.sha256)).first() is not None

    def take_content(self, content_sha256: str, sha256: str) -> str:
        """The file (bytes hash) that owns this decoded content: ``sha256`` when it is the
        first to land it (or took it before, e.g. when reprocessed); else the earlier one."""
        statement = (
            _insert(self.engine)(landed_contents)
            .values(content_sha256=content_sha256, sha256=sha256, taken_at=_now())
            .on_conflict_do_nothing()
        )
        owner = select(landed_contents.c.sha256).where(
            landed_contents.c.content_sha256 == content_sha256
        )
        with self.engine.begin() as conn:
            conn.execute(statement)
            return conn.execute(owner).scalar_one()

    def curated_versions(self, zone_url: str, key: str, newer: str) -> list[LedgerEntry]:
        """Files curated from ``key`` of a zone before its content became ``newer``."""
        query = select(landed_files).where(
            landed_files.c.zone_url == zone_url,
            landed_files.c.source_key == key,
            landed_files.c.status == CURATED,
            landed_files.c.sha256 != newer,
        )
        with self.engine.connect() as conn:
            return [LedgerEntry(**row._mapping) for row in conn.execute(query)]

    def supersede_curated(self, older: Iterable[str], newer: str, run_id: str) -> None:
        """Record that the curated files ``older`` were replaced by ``newer`` (same key)."""
        now = _now()
        with self.engine.begin() as conn:
            for sha in older:
                conn.execute(
                    update(landed_files)
                    .where(landed_files.c.sha256 == sha)
                    .values(status=SUPERSEDED, reason=f"replaced by {newer}", finished_at=now)
                )
                conn.execute(
                    _insert(self.engine)(superseded_files)
                    .values(sha256=sha, superseded_by=newer, dag_run_id=run_id, superseded_at=now)
                    .on_conflict_do_nothing()
                )

    def versions_of(self, sha256: str) -> list[str]:
        """The chain of versions ending at ``sha256``, oldest first (itself last)."""
        chain = [sha256]
        with self.engine.connect() as conn:
            while (
                older := conn.execute(
                    select(superseded_files.c.sha256).where(
                        superseded_files.c.superseded_by == chain[0]
                    )
                ).scalar()
            ) and older not in chain:  # a key rewritten back to an earlier content ends it
                chain.insert(0, older)
        return chain

    def release_unfinished(self, run_id: str, reason: str) -> list[str]:
        """Mark the files a run claimed but never finished as failed, so a later run retries."""
        with self.engine.begin() as conn:
            rows = conn.execute(
                update(landed_files)
                .where(landed_files.c.dag_run_id == run_id, landed_files.c.status == CLAIMED)
                .values(status=FAILED, reason=reason, finished_at=_now())
                .returning(landed_files.c.sha256)
            )
            return [sha for (sha,) in rows]

    # -- reading -----------------------------------------------------------------------------

    def statuses(self, shas: Iterable[str]) -> dict[str, str]:
        shas = list(shas)
        if not shas:
            return {}
        query = select(landed_files.c.sha256, landed_files.c.status).where(
            landed_files.c.sha256.in_(shas)
        )
        with self.engine.connect() as conn:
            return dict(conn.execute(query).all())

    def run_entries(self, run_id: str) -> list[LedgerEntry]:
        """Files a DAG run claimed, with their outcome."""
        query = select(landed_files).where(landed_files.c.dag_run_id == run_id)
        with self.engine.connect() as conn:
            return [
                LedgerEntry(**row._mapping) for row in conn.execute(query.order_by("source_key"))
            ]

    def get(self, sha256: str) -> LedgerEntry | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(landed_files).where(landed_files.c.sha256 == sha256)).first()
        return LedgerEntry(**row._mapping) if row else None

    def entries(self, statuses: Iterable[str] | None = None) -> list[LedgerEntry]:
        query = select(landed_files).order_by(landed_files.c.first_seen_at, landed_files.c.sha256)
        if statuses is not None:
            query = query.where(landed_files.c.status.in_(list(statuses)))
        with self.engine.connect() as conn:
            return [LedgerEntry(**row._mapping) for row in conn.execute(query)]

    def sha256_of(self, *, key: str | None = None, lot_id: str | None = None) -> list[str]:
        """Content hashes landed under a source key, or curated for a lot (for reprocessing)."""
        with self.engine.connect() as conn:
            if key is not None:
                query = select(landed_sources.c.sha256).where(landed_sources.c.source_key == key)
            else:
                query = select(landed_files.c.sha256).where(landed_files.c.lot_id == lot_id)
            return sorted({sha for (sha,) in conn.execute(query)})
