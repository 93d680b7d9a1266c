"""SQLAlchemy engines for our own tables (prediction log, rollout audit)."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Engine, MetaData, create_engine


def engine_with_tables(url: str, metadata: MetaData) -> Engine:
    """An engine on ``url`` with ``metadata``'s tables created if missing; a SQLite file's
    folder is created first (the local default lives under a home that may not exist)."""
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url)
    metadata.create_all(engine)
    return engine
