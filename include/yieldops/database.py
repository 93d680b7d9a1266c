"""SQLAlchemy engines for our own tables (landing ledger, prediction log, rollout audit)."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Engine, MetaData, create_engine, event
from sqlalchemy.engine import make_url


def engine_with_tables(url: str, metadata: MetaData, shared: bool = False) -> Engine:
    """An engine on ``url`` with ``metadata``'s tables created if missing; a SQLite file's
    folder is created first (the local default lives under a home that may not exist).

    ``shared``: many processes write at once (the ledger: every ingest worker claims).
    """
    database = make_url(url).database if url.startswith("sqlite") else None
    if database and database != ":memory:":
        Path(database).parent.mkdir(parents=True, exist_ok=True)
    engine = _shared_engine(url) if shared else create_engine(url)
    metadata.create_all(engine)
    return engine


def _shared_engine(url: str) -> Engine:
    """SQLite in WAL mode, waiting up to a minute for the write lock; PostgreSQL connections
    checked before use (a long-lived worker outlives the server's idle timeout)."""
    if not url.startswith("sqlite"):
        return create_engine(url, pool_pre_ping=True)
    engine = create_engine(url, connect_args={"timeout": 60})

    @event.listens_for(engine, "connect")
    def _wal(dbapi_connection, _record) -> None:  # readers do not block the claimer
        dbapi_connection.execute("PRAGMA journal_mode=WAL")

    return engine
