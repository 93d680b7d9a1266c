"""The prediction log: one row per scored die, served or shadow.

The gateway queues its served rows, and one writer thread inserts them in batches, so
the event loop never waits for the database. The mirror worker process writes its
unserved rows into the same table itself. Labels join later from the curated data on
the die key (``lot_id:wafer_id:x:y``).
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Iterable, Sequence
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

_STOP = object()


class PredictionTable:
    """The table behind ``url`` (created if missing); rows written by the calling thread."""

    def __init__(self, url: str) -> None:
        self.engine = engine_with_tables(url, metadata)

    def write(self, rows: list[dict[str, Any]]) -> None:
        if not rows:
            return
        try:
            with self.engine.begin() as conn:
                conn.execute(insert(predictions), rows)
        except Exception:  # the log must never take the gateway down
            log.exception("could not write %d prediction log rows", len(rows))

    def rows(self, **where: Any) -> list[dict[str, Any]]:
        query = select(predictions).order_by(predictions.c.id)
        for name, value in where.items():
            query = query.where(predictions.c[name] == value)
        with self.engine.connect() as conn:
            return [dict(row._mapping) for row in conn.execute(query)]

    def close(self) -> None:
        self.engine.dispose()


class PredictionLog(PredictionTable):
    """Rows queued by any thread, inserted in batches by a writer thread of its own."""

    def __init__(self, url: str, batch_rows: int = 500, flush_seconds: float = 0.2) -> None:
        super().__init__(url)
        self.batch_rows = batch_rows
        self.flush_seconds = flush_seconds
        self._queue: queue.Queue = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="prediction-log", daemon=True)
        self._thread.start()

    def add(self, rows: Iterable[dict[str, Any]]) -> None:
        for row in rows:
            self._queue.put(row)

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
        pending: list[dict[str, Any]] = []
        while True:
            try:
                item = self._queue.get(timeout=self.flush_seconds)
            except queue.Empty:
                item = None
            if isinstance(item, dict):
                pending.append(item)
                if len(pending) < self.batch_rows:
                    continue
            self.write(pending)
            pending = []
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


def now() -> datetime:
    return datetime.now(timezone.utc)
