"""The rollout audit log: every routing change, verdict and decision, with who and why.

One SQLAlchemy table (``yieldops_rollout_audit``; SQLite by default, PostgreSQL by URL).
A row names the model and versions, the target gateway, the step, what happened
(``event``), the verdict if any, a one-line summary, the numbers behind it (JSON) and
where it came from: DAG, run and who or what triggered the run.

>>> log = AuditLog("sqlite:///rollout.db")  # doctest: +SKIP
>>> log.rows(model="yield-YO-7NM-ADC")  # doctest: +SKIP
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import (
    Column,
    DateTime,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    insert,
    select,
)

from ..database import engine_with_tables

EVENTS = (
    "offline_check",  # the model on the target's recent curated data
    "routing",  # a routing change on a gateway
    "verdict",  # a step's analysis
    "approval",  # a person's decision
    "promoted",  # MLflow alias champion moved
    "rollback",  # routing restored to the champion
    "rejected",  # the challenger tagged rejected: judged and failed
    "aborted",  # the challenger tagged aborted: no step had the evidence to judge it
)
MAX_SUMMARY = 2000

metadata = MetaData()
audit = Table(
    "yieldops_rollout_audit",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("time", DateTime(timezone=True), nullable=False, index=True),
    Column("model", String(256), nullable=False, index=True),
    Column("version", Integer, nullable=False),
    Column("champion", Integer, nullable=True),
    Column("target", String(128), nullable=True),
    Column("step", String(64), nullable=True),
    Column("event", String(32), nullable=False),
    Column("verdict", String(16), nullable=True),
    Column("summary", String(MAX_SUMMARY), nullable=False),
    Column("details", Text, nullable=True),
    Column("dag_id", String(250), nullable=True),
    Column("run_id", String(250), nullable=True, index=True),
    Column("triggered_by", String(250), nullable=True),
)


@dataclass(frozen=True)
class RolloutRef:
    """Which rollout a record belongs to (the same for every record of one DAG run)."""

    model: str
    version: int
    champion: int | None
    dag_id: str | None = None
    run_id: str | None = None
    triggered_by: str | None = None


class AuditLog:
    def __init__(self, url: str) -> None:
        self.engine = engine_with_tables(url, metadata)

    def close(self) -> None:
        self.engine.dispose()

    def record(
        self,
        ref: RolloutRef,
        event: str,
        summary: str,
        *,
        target: str | None = None,
        step: str | None = None,
        verdict: str | None = None,
        details: Any = None,
    ) -> dict[str, Any]:
        if event not in EVENTS:
            raise ValueError(f"unknown audit event {event!r}: one of {', '.join(EVENTS)}")
        row = {
            **asdict(ref),
            "time": datetime.now(timezone.utc),
            "target": target,
            "step": step,
            "event": event,
            "verdict": verdict,
            "summary": summary[:MAX_SUMMARY],
            "details": None if details is None else json.dumps(details, default=str),
        }
        with self.engine.begin() as conn:
            conn.execute(insert(audit), [row])
        return row

    def rows(self, **where: Any) -> list[dict[str, Any]]:
        """Records matching every ``column=value`` given, oldest first; details decoded."""
        query = select(audit).order_by(audit.c.id)
        for name, value in where.items():
            query = query.where(audit.c[name] == value)
        with self.engine.connect() as conn:
            records = [dict(row._mapping) for row in conn.execute(query)]
        for record in records:
            record["details"] = json.loads(record["details"]) if record["details"] else None
        return records


def run_note(records: list[dict[str, Any]], limit: int = 1000) -> str:
    """The run's story in one note: each record as ``target/step: summary``."""
    lines = []
    for r in records:
        where = "/".join(part for part in (r["target"], r["step"]) if part)
        lines.append(f"- {where + ': ' if where else ''}{r['summary']}")
    text = "\n".join(lines)
    return text if len(text) <= limit else text[: limit - 2] + " …"
