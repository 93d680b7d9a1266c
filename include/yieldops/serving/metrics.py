"""Gateway metrics for Prometheus: requests, predictions, errors, latency and fallbacks;
the routing table in force; mirrored copies waiting and dropped.

Predictions, errors and latency are labelled by model version, role and path
(``served``: answered to the caller; ``shadow``: a mirrored copy, either role). Each app
has its own registry, so two gateways in one process (tests) do not share counters.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
)
from prometheus_client.exposition import generate_latest

from .routing import Routing

CONTENT_TYPE = CONTENT_TYPE_LATEST
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
_BY_MODEL = ("version", "role", "path")
# Why a mirrored copy was not scored: the workers already hold ``mirror_max_pending``
# dies; no worker takes copies (not started, or gone); the worker cannot load the version.
DROP_REASONS = ("backlog", "no_workers", "not_loaded")
# What became of a request: answered; refused as the caller's fault (4xx); no champion
# loaded (503); failed in the gateway (any other 5xx).
OUTCOMES = ("ok", "client_error", "unavailable", "server_error")


def outcome_of(status: int) -> str:
    """The outcome a response's HTTP status counts as."""
    if status < 400:
        return "ok"
    if status < 500:
        return "client_error"
    return "unavailable" if status == 503 else "server_error"


# Who could not write prediction log rows: the gateway's process (served rows, dropped-copy
# records) or a mirror worker (the copies' rows).
LOG_WRITERS = ("gateway", "mirror")


class Metrics:
    def __init__(self, prefix: str = "yieldops_gateway") -> None:
        self.registry = CollectorRegistry()

        def counter(name: str, text: str, labels=_BY_MODEL) -> Counter:
            return Counter(f"{prefix}_{name}", text, labels, registry=self.registry)

        self._requests = counter(
            "requests",
            "HTTP prediction requests by outcome; server_error also counts any other request "
            "the gateway failed with a 5xx.",
            ("outcome",),
        )
        for outcome in OUTCOMES:  # at 0 from the start, as the drop reasons
            self._requests.labels(outcome)
        self._predictions = counter("predictions", "Dies scored, by model version, role and path.")
        self._errors = counter("errors", "Dies whose scoring failed, by model version, role, path.")
        self._shadow_dropped = counter(
            "shadow_dropped", "Dies whose mirrored copy was dropped, not scored, by reason.",
            ("reason",),
        )  # fmt: skip
        for reason in DROP_REASONS:  # at 0 from the start, so increase() and alerts see them
            self._shadow_dropped.labels(reason)
        self._log_lost = counter(
            "prediction_log_lost_rows",
            "Prediction log rows that could not be written (each logged with its reason), "
            "by writer.",
            ("writer",),
        )
        for writer in LOG_WRITERS:
            self._log_lost.labels(writer)
        self._shadow_backlog = Gauge(
            f"{prefix}_shadow_backlog",
            "Dies whose mirrored copies are handed to the workers, not scored yet.",
            registry=self.registry,
        )
        self._fallbacks = counter(
            "fallbacks",
            "Dies the challenger failed on and the champion answered, by challenger version.",
            ("version",),
        )
        self._routing = Info(
            f"{prefix}_routing",
            "The routing table in force: mode, champion, challenger ('' when none), live.",
            registry=self.registry,
        )
        self._routing_weight = Gauge(
            f"{prefix}_routing_weight",
            "Canary weight of the routing table: percent of die keys the challenger answers "
            "in mode canary.",
            registry=self.registry,
        )
        self._latency = Histogram(
            f"{prefix}_latency_seconds",
            "Model call latency, by model version, role and path.",
            _BY_MODEL,
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )

    def observe(
        self, version: int, role: str, path: str, records: int, errors: int, seconds: float
    ) -> None:
        """One model call: ``records`` predictions (``errors`` of them failed), its latency."""
        labels = (str(version), role, path)
        self._predictions.labels(*labels).inc(records)
        self._errors.labels(*labels).inc(errors)
        self._latency.labels(*labels).observe(seconds)

    def request(self, outcome: str) -> None:
        self._requests.labels(outcome).inc()

    def shadow_dropped(self, reason: str, dies: int) -> None:
        self._shadow_dropped.labels(reason).inc(dies)

    def prediction_log_lost(self, writer: str, rows: int) -> None:
        self._log_lost.labels(writer).inc(rows)

    def routing(self, routing: Routing) -> None:
        """The table now in force (one series: the previous table's labels are replaced)."""
        challenger = "" if routing.challenger is None else str(routing.challenger)
        self._routing.info(
            {
                "mode": routing.mode,
                "champion": str(routing.champion),
                "challenger": challenger,
                "live": routing.live,
            }
        )
        self._routing_weight.set(routing.weight)

    def track_shadow_backlog(self, backlog: Callable[[], int]) -> None:
        """Read at each scrape, so handing a copy over costs no metric update."""
        self._shadow_backlog.set_function(backlog)

    def fallback(self, challenger_version: int, dies: int) -> None:
        self._fallbacks.labels(str(challenger_version)).inc(dies)

    def render(self) -> str:
        return generate_latest(self.registry).decode()
