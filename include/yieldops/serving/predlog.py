"""The prediction log: one row per scored die, served or shadow; and the mirrored copies
dropped unscored, so a step's window knows what it is missing.

The gateway queues its served rows, and one writer thread inserts them in batches, so
the event loop never waits for the database. The mirror worker process writes its
unserved rows into the same table itself. Labels join later from the curated data on
the die key (``lot_id:wafer_id:x:y``).

One row never costs another its place: rows are made storable on every backend before
the insert (text columns without lone surrogates or NUL, cut to the column's size), and a
batch the database refuses is split in halves, down to single rows, so only a row that
truly cannot be written is lost. Lost rows are logged with the reason and counted
(``lost_rows``, and ``on_lost`` for a metric); a database that cannot be reached at all
loses the batch, counted the same way.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    insert,
    select,
)
from sqlalchemy.exc import InterfaceError, OperationalError

from ..database import engine_with_tables

if TYPE_CHECKING:
    from .models import Scored

log = logging.getLogger(__name__)

metadata = MetaData()
predictions = Table(
    "yieldops_predictions",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("request_id", String(64), nullable=False, index=True),
    Column("time", DateTime(timezone=True), nullable=False),
    Column("die_key", String(256), nullable=False, index=True),
    Column("version", Integer, nullable=False),
    Column("role", String(16), nullable=False),
    # False: a shadow prediction, logged but never returned to the caller.
    Column("served", Boolean, nullable=False),
    Column("prediction", Integer, nullable=True),
    Column("probability", Float, nullable=True),
    Column("latency_ms", Float, nullable=False),
    Column("error", String(1000), nullable=True),
)
# Dies of one request whose copy for ``version`` was dropped, not scored (reasons: see
# ``metrics.DROP_REASONS``): what a rollout step's window lacks, and why.
dropped_copies = Table(
    "yieldops_dropped_copies",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("time", DateTime(timezone=True), nullable=False, index=True),
    Column("version", Integer, nullable=False),
    Column("role", String(16), nullable=False),
    Column("dies", Integer, nullable=False),
    Column("reason", String(32), nullable=False),
)
# Errors that say the database cannot be reached or used now, whatever the rows hold:
# splitting the batch would only ask it again once per row.
UNAVAILABLE = (OperationalError, InterfaceError)

_STOP = object()


def storable_text(text: str, length: int | None) -> str:
    """``text`` as every backend stores it: lone surrogates replaced (SQLite and PostgreSQL
    refuse to encode them), NUL removed (PostgreSQL refuses it), at most ``length``
    characters (PostgreSQL refuses longer ones)."""
    text = text.encode("utf-8", "replace").decode("utf-8").replace("\x00", "")
    return text if length is None else text[:length]


def storable(table: Table, row: dict[str, Any]) -> dict[str, Any]:
    """``row`` with each text value made storable in its column of ``table``."""
    cleaned = dict(row)
    for column in table.columns:
        value = cleaned.get(column.name)
        if isinstance(value, str) and isinstance(column.type, String):
            cleaned[column.name] = storable_text(value, column.type.length)
    return cleaned


class PredictionTable:
    """The tables behind ``url`` (created if missing); rows written by the calling thread.

    ``on_lost(rows)`` is told of every row that could not be written (e.g. a metric)."""

    def __init__(self, url: str, on_lost: Callable[[int], None] | None = None) -> None:
        self.engine = engine_with_tables(url, metadata)
        self.on_lost = on_lost
        self.lost_rows = 0

    def write(self, rows: list[dict[str, Any]], table: Table = predictions) -> int:
        """Insert ``rows`` into ``table``; returns how many were lost (logged, counted)."""
        if not rows:
            return 0
        lost = self._insert(table, [storable(table, row) for row in rows])
        if lost:
            self.lost_rows += lost
            if self.on_lost is not None:
                self.on_lost(lost)
        return lost

    def _insert(self, table: Table, rows: list[dict[str, Any]]) -> int:
        """One insert; when the database refuses the rows, each half on its own."""
        try:
            with self.engine.begin() as conn:
                conn.execute(insert(table), rows)
            return 0
        except UNAVAILABLE as exc:
            log.error("%s: %d rows lost, the database is unavailable: %s",
                      table.name, len(rows), _first_line(exc))  # fmt: skip
            return len(rows)
        except Exception as exc:  # the log must never take the gateway down
            if len(rows) > 1:
                half = len(rows) // 2
                return self._insert(table, rows[:half]) + self._insert(table, rows[half:])
            [row] = rows
            log.error("%s: a row lost (request %r, die %r): %s", table.name,
                      row.get("request_id"), row.get("die_key"), _first_line(exc))  # fmt: skip
            return 1

    def rows(self, table: Table = predictions, **where: Any) -> list[dict[str, Any]]:
        query = select(table).order_by(table.c.id)
        for name, value in where.items():
            query = query.where(table.c[name] == value)
        with self.engine.connect() as conn:
            return [dict(row._mapping) for row in conn.execute(query)]

    def close(self) -> None:
        self.engine.dispose()


class PredictionLog(PredictionTable):
    """Rows queued by any thread, inserted in batches by a writer thread of its own."""

    def __init__(
        self,
        url: str,
        batch_rows: int = 500,
        flush_seconds: float = 0.2,
        on_lost: Callable[[int], None] | None = None,
    ) -> None:
        super().__init__(url, on_lost)
        self.batch_rows = batch_rows
        self.flush_seconds = flush_seconds
        self._queue: queue.Queue = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="prediction-log", daemon=True)
        self._thread.start()

    def add(self, rows: Iterable[dict[str, Any]], table: Table = predictions) -> None:
        for row in rows:
            self._queue.put((table, row))

    def flush(self, timeout: float = 10.0) -> None:
        """Wait until every row queued so far is written."""
        done = threading.Event()
        self._queue.put(done)
        done.wait(timeout)

    def close(self) -> None:
        self._queue.put(_STOP)
        self._thread.join(timeout=10)
        super().close()

    def _run(self) -> None:
        """Write once ``batch_rows`` rows wait or the first of them has waited
        ``flush_seconds``: a steady trickle of rows is written as often as a burst."""
        pending: dict[Table, list[dict[str, Any]]] = {}
        waiting, due = 0, 0.0
        while True:
            timeout = max(0.0, due - time.monotonic()) if waiting else None
            try:
                item = self._queue.get(timeout=timeout)
            except queue.Empty:
                item = None
            if isinstance(item, tuple):
                table, row = item
                pending.setdefault(table, []).append(row)
                waiting += 1
                if waiting == 1:
                    due = time.monotonic() + self.flush_seconds
                if waiting < self.batch_rows and time.monotonic() < due:
                    continue
            for table, rows in pending.items():
                self.write(rows, table)
            pending, waiting = {}, 0
            if isinstance(item, threading.Event):
                item.set()
            elif item is _STOP:
                return


def prediction_rows(
    request_id: str,
    version: int,
    role: str,
    served: bool,
    die_keys: Sequence[str],
    scored: Scored,
) -> list[dict[str, Any]]:
    """The log rows of one model call, one per die."""
    at, latency_ms = now(), scored.seconds * 1000.0
    proba = [None] * len(die_keys) if scored.proba is None else scored.proba.tolist()
    return [
        {
            "request_id": request_id,
            "time": at,
            "die_key": key,
            "version": version,
            "role": role,
            "served": served,
            "prediction": None if p is None else int(p > 0.5),
            "probability": p,
            "latency_ms": latency_ms,
            "error": scored.error,
        }
        for key, p in zip(die_keys, proba)
    ]


def dropped_row(version: int, role: str, dies: int, reason: str) -> dict[str, Any]:
    """The row of a copy dropped unscored: ``dies`` of ``version`` missing, and why."""
    return {"time": now(), "version": version, "role": role, "dies": dies, "reason": reason}


def _first_line(exc: Exception) -> str:
    return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"


def now() -> datetime:
    return datetime.now(timezone.utc)
