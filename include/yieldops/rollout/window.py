"""A rollout step's window of the prediction log, and the step's judgement on it.

The gateway scores every die with both versions while a challenger is routed (one answers,
the other scores a copy off the request path), so each die in the window gives a pair of
answers: agreement, shift and paired accuracy compare the two on the same dies. Labels
join on the die key from the curated data once the die's STDF file has been ingested.

Latency samples are one per request and version (the gateway times a batch once), so a
batch of 20 dies counts once, not 20 times, in the Mann-Whitney test; answered requests
are compared with answered ones when both versions have enough of them.

Copies the gateway dropped unscored (its mirror workers behind, or unable to load a
version) are recorded beside the predictions: the window says how many dies each version
never scored, so a step short of samples says why.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import numpy as np
import pandas as pd
from sqlalchemy import Select, Table, create_engine, func, inspect, select

from ..serving.predlog import dropped_copies, predictions
from .analysis import (
    Check,
    StepVerdict,
    accuracy_check,
    agreement_check,
    error_rate_check,
    judge,
    latency_check,
    shift_check,
)
from .thresholds import Thresholds

COLUMNS = (
    "request_id",
    "time",
    "die_key",
    "version",
    "served",
    "probability",
    "latency_ms",
    "error",
)


@dataclass(frozen=True)
class StepWindow:
    """Rows of these two versions logged at or after ``since`` (UTC)."""

    champion: int
    challenger: int
    since: datetime

    @property
    def versions(self) -> tuple[int, int]:
        return self.champion, self.challenger


def requests_per_version(log_url: str, window: StepWindow) -> dict[int, int]:
    """How many requests each version scored in the window (served or mirrored)."""
    query = (
        select(predictions.c.version, func.count(func.distinct(predictions.c.request_id)))
        .where(predictions.c.version.in_(window.versions), predictions.c.time >= window.since)
        .group_by(predictions.c.version)
    )
    return _per_version(log_url, query, window)


def dropped_per_version(log_url: str, window: StepWindow) -> dict[int, int]:
    """How many dies of each version had their mirrored copy dropped in the window (none
    when the log has no record of drops: a gateway from before they were recorded)."""
    query = (
        select(dropped_copies.c.version, func.sum(dropped_copies.c.dies))
        .where(dropped_copies.c.version.in_(window.versions), dropped_copies.c.time >= window.since)
        .group_by(dropped_copies.c.version)
    )
    return _per_version(log_url, query, window, needs=dropped_copies)


def _per_version(
    log_url: str, query: Select, window: StepWindow, needs: Table | None = None
) -> dict[int, int]:
    """The (version, count) rows of ``query``, 0 for a version without any; all 0 when the
    log lacks the table ``needs``."""
    counts = dict.fromkeys(window.versions, 0)
    engine = create_engine(log_url)
    try:
        with engine.connect() as conn:
            if needs is None or inspect(conn).has_table(needs.name):
                counts.update({int(v): int(n) for v, n in conn.execute(query)})
    finally:
        engine.dispose()
    return counts


def read_window(log_url: str, window: StepWindow) -> pd.DataFrame:
    query = select(*(predictions.c[name] for name in COLUMNS)).where(
        predictions.c.version.in_(window.versions), predictions.c.time >= window.since
    )
    engine = create_engine(log_url)
    try:
        with engine.connect() as conn:
            return pd.DataFrame(conn.execute(query).fetchall(), columns=list(COLUMNS))
    finally:
        engine.dispose()


def lots_in(rows: pd.DataFrame) -> list[str]:
    """Lot ids named by the die keys (``lot:wafer:x:y``) of the window."""
    return sorted({key.rsplit(":", 3)[0] for key in rows["die_key"].unique()})


def judge_window(
    rows: pd.DataFrame,
    window: StepWindow,
    labels: pd.Series,
    thresholds: Thresholds,
    with_agreement: bool,
) -> StepVerdict:
    """Error rate, latency, paired accuracy, shift (and agreement in shadow) of the window."""
    champion = rows[rows["version"] == window.champion]
    challenger = rows[rows["version"] == window.challenger]
    pairs = paired_answers(rows, window)
    labelled = pairs.join(labels.rename("label"), on="die_key", how="inner")
    t = thresholds
    checks: list[Check] = [
        error_rate_check(
            _errors(champion),
            len(champion),
            _errors(challenger),
            len(challenger),
            min_samples=t.min_samples,
            alpha=t.alpha,
            max_increase=t.max_error_increase,
        ),
        latency_check(
            *comparable_latencies(champion, challenger, t.min_samples),
            min_samples=t.min_samples,
            alpha=t.alpha,
            p95_limit_ms=t.p95_limit_ms,
            max_increase=t.max_latency_increase,
            min_increase_ms=t.min_latency_increase_ms,
        ),
        accuracy_check(
            labelled["label"].to_numpy(),
            _good(labelled["champion"]),
            _good(labelled["challenger"]),
            min_samples=t.min_samples,
            alpha=t.alpha,
            max_drop=t.max_accuracy_drop,
        ),
        shift_check(
            pairs["champion"].to_numpy(),
            pairs["challenger"].to_numpy(),
            min_samples=t.min_samples,
            ks_alpha=t.alpha,
            psi_limit=t.psi_limit,
        ),
    ]
    if with_agreement:
        checks.append(
            agreement_check(
                _good(pairs["champion"]),
                _good(pairs["challenger"]),
                min_samples=t.min_samples,
                min_agreement=t.min_agreement,
            )
        )
    return judge(checks)


def paired_answers(rows: pd.DataFrame, window: StepWindow) -> pd.DataFrame:
    """One row per (request, die) both versions scored without error: ``die_key``,
    ``champion`` and ``challenger`` probabilities of good."""
    answered = rows[rows["error"].isna() & rows["probability"].notna()]
    wide = answered.pivot_table(
        index=["request_id", "die_key"], columns="version", values="probability", aggfunc="last"
    )
    wide = wide.reindex(columns=list(window.versions)).dropna()
    wide.columns = ["champion", "challenger"]
    return wide.reset_index()


def comparable_latencies(
    champion: pd.DataFrame, challenger: pd.DataFrame, min_samples: int
) -> tuple[np.ndarray, np.ndarray]:
    """Like with like: answered (served) requests of both versions when each has enough,
    else every request (in shadow the challenger only ever scores copies)."""
    served = (
        request_latencies(champion[champion["served"]]),
        request_latencies(challenger[challenger["served"]]),
    )
    if min(len(served[0]), len(served[1])) >= min_samples:
        return served
    return request_latencies(champion), request_latencies(challenger)


def request_latencies(rows: pd.DataFrame) -> np.ndarray:
    """One latency per request (and served/mirrored path) of one version."""
    return rows.groupby(["request_id", "served"])["latency_ms"].first().to_numpy(dtype=float)


def _errors(rows: pd.DataFrame) -> int:
    return int(rows["error"].notna().sum())


def _good(probability: pd.Series) -> np.ndarray:
    """Good when P(good) > 0.5, as ``Pipeline.predict`` and the training evaluation decide."""
    return (probability.to_numpy(dtype=float) > 0.5).astype(int)
