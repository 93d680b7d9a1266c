"""Replay curated dies to a prediction gateway at a steady rate (demo and test traffic).

>>> table = load_replay_frame("curated/", product_config)  # doctest: +SKIP
>>> report = replay("http://127.0.0.1:8080", table.frame, table.feature_columns,
...                 rate_per_s=50, limit=1000)  # doctest: +SKIP
>>> report.to_dict()  # doctest: +SKIP

Each request is ``POST /v1/predict`` with ``{"records": [...]}``; a record is
``{"lot_id", "wafer_id", "x", "y", <feature>: value...}`` with NaN sent as ``null`` (the
model imputes it). ``rate_per_s`` counts dies: with ``batch_size`` b a request leaves every
b / rate seconds, on a schedule fixed from the start on the monotonic clock (a slow
answer delays the next request but does not shift the schedule; the replayer sends one
request at a time, so a gateway slower than the rate caps it). The report records when
each request left, so the pacing can be checked from what happened. Failures (a status
other than 2xx, or a transport error such as a refused connection or a timeout) are
counted and the replay goes on.
"""

from __future__ import annotations

import itertools
import math
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd

PREDICT_PATH = "/v1/predict"
RECORD_KEYS = ("lot_id", "wafer_id", "x", "y")
MAX_LATENCIES = 100_000  # latencies and send times kept; beyond that only counts grow


@dataclass
class ReplayReport:
    """What one replay did. ``sent``/``ok``/``failed`` count dies, ``requests`` requests."""

    sent: int = 0
    ok: int = 0
    failed: int = 0
    requests: int = 0
    failed_requests: int = 0
    seconds: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)
    # When each request left, in seconds from the start on the replay's clock.
    sent_at_s: list[float] = field(default_factory=list)
    # "status 500", "ConnectError", ...: how many requests failed that way.
    errors: Counter = field(default_factory=Counter)

    def percentile_ms(self, q: float) -> float | None:
        if not self.latencies_ms:
            return None
        return float(np.percentile(self.latencies_ms, q))

    @property
    def p50_ms(self) -> float | None:
        return self.percentile_ms(50)

    @property
    def p95_ms(self) -> float | None:
        return self.percentile_ms(95)

    @property
    def rate_per_s(self) -> float:
        """Dies per second actually sent."""
        return self.sent / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "sent": self.sent,
            "ok": self.ok,
            "failed": self.failed,
            "requests": self.requests,
            "failed_requests": self.failed_requests,
            "seconds": round(self.seconds, 3),
            "rate_per_s": round(self.rate_per_s, 2),
            "p50_ms": self.p50_ms,
            "p95_ms": self.p95_ms,
            "errors": dict(self.errors),
        }


def load_replay_frame(curated_dir: str | Path, product_config: Any):
    """The feature table of the curated data (``.frame``, ``.feature_columns``)."""
    from ..features import build_feature_table

    return build_feature_table(curated_dir, product_config)


def _json_value(value: Any) -> Any:
    """A JSON-safe scalar: numpy types unwrapped, NaN/inf/NA as None."""
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def to_records(frame: pd.DataFrame, feature_columns: Sequence[str]) -> list[dict[str, Any]]:
    """One JSON-ready record per row: the die's keys, then its features."""
    missing = [c for c in RECORD_KEYS if c not in frame.columns]
    if missing:
        raise ValueError(f"the frame lacks key columns {missing}")
    columns = list(dict.fromkeys([*RECORD_KEYS, *feature_columns]))
    present = [c for c in columns if c in frame.columns]
    records = []
    for row in frame[present].itertuples(index=False, name=None):
        record = {c: _json_value(v) for c, v in zip(present, row)}
        for c in columns:  # a feature the frame lacks: sent as null, imputed by the model
            record.setdefault(c, None)
        records.append(record)
    return records


def _batches(records: list[dict[str, Any]], batch_size: int) -> Iterator[list[dict[str, Any]]]:
    """Batches over the records, starting over at the end, forever."""
    i = 0
    while True:
        batch: list[dict[str, Any]] = []
        while len(batch) < batch_size:
            batch.append(records[i])
            i = (i + 1) % len(records)
        yield batch


def replay(
    gateway_url: str,
    frame: pd.DataFrame,
    feature_columns: Sequence[str],
    *,
    rate_per_s: float,
    batch_size: int = 1,
    limit: int | None = None,
    duration_s: float | None = None,
    timeout: float = 5.0,
    stop: threading.Event | None = None,
    headers: dict[str, str] | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], object] | None = None,
) -> ReplayReport:
    """Send dies of ``frame`` to ``gateway_url`` at ``rate_per_s`` dies per second.

    Stops after ``limit`` dies (the frame is looped over when it has fewer rows), after
    ``duration_s`` seconds (no request starts later), or when ``stop`` is set, whichever
    comes first; one of the three is required. The last batch is cut to fit ``limit``.
    ``clock`` and ``sleep`` keep the schedule (default: the monotonic clock, and
    ``stop.wait`` or ``time.sleep``); a test passes a simulated pair.
    """
    if rate_per_s <= 0:
        raise ValueError("rate_per_s must be positive")
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    if limit is None and duration_s is None and stop is None:
        raise ValueError("give limit, duration_s or stop: the replay would never end")
    if frame.empty:
        raise ValueError("no rows to replay")
    report = ReplayReport()
    if limit is not None and limit <= 0:
        return report
    rows = frame if limit is None or limit >= len(frame) else frame.iloc[:limit]
    batches = _batches(to_records(rows, feature_columns), batch_size)
    interval = batch_size / rate_per_s
    wait = sleep or (stop.wait if stop is not None else time.sleep)
    url = gateway_url.rstrip("/") + PREDICT_PATH
    limits = httpx.Limits(max_connections=4, max_keepalive_connections=4)

    with httpx.Client(timeout=timeout, limits=limits, headers=headers) as client:
        started = clock()
        for k in itertools.count():
            if limit is not None and report.sent >= limit:
                break
            if stop is not None and stop.is_set():
                break
            offset = k * interval  # from the start, so rounding never accumulates
            if duration_s is not None and offset >= duration_s - 1e-9:
                break
            delay = started + offset - clock()
            if delay > 0:
                wait(delay)
                if stop is not None and stop.is_set():
                    break
            batch = next(batches)
            if limit is not None:
                batch = batch[: limit - report.sent]
            if len(report.sent_at_s) < MAX_LATENCIES:
                report.sent_at_s.append(clock() - started)
            _send(client, url, batch, report)
        report.seconds = clock() - started
    return report


def _send(client: httpx.Client, url: str, batch: list[dict[str, Any]], report: ReplayReport):
    sent_at = time.perf_counter()
    try:
        response = client.post(url, json={"records": batch})
        error = None if response.is_success else f"status {response.status_code}"
    except httpx.HTTPError as exc:
        error = type(exc).__name__
    if error is None and len(report.latencies_ms) < MAX_LATENCIES:
        report.latencies_ms.append((time.perf_counter() - sent_at) * 1000.0)
    report.requests += 1
    report.sent += len(batch)
    if error is None:
        report.ok += len(batch)
    else:
        report.failed += len(batch)
        report.failed_requests += 1
        report.errors[error] += 1
