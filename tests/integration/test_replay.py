"""The traffic replayer against a real gateway (uvicorn on 127.0.0.1, injected model)."""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import pandas as pd
import pytest
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from tests.integration.conftest import serve_gateway

from yieldops.serving.replay import replay, to_records
from yieldops.serving.settings import GatewaySettings

FEATURES = ["test_100", "test_101", "x", "y", "radius", "site"]


def _frame(rows: int, seed: int = 0) -> pd.DataFrame:
    """Rows shaped like a FeatureTable frame: keys, ``test_<n>`` features, label."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 40, rows)
    y = rng.integers(0, 40, rows)
    frame = pd.DataFrame(
        {
            "product": "P1",
            "lot_id": "LOT7",
            "wafer_id": rng.integers(1, 25, rows),
            "file": "lot7.stdf",
            "part_index": np.arange(rows),
            "x": x,
            "y": y,
            "site": rng.integers(0, 4, rows),
            "test_100": rng.normal(size=rows),
            "test_101": rng.normal(size=rows),
            "radius": np.hypot(x - 20, y - 20),
        }
    )
    frame["good"] = (frame["test_100"] + 0.02 * frame["x"] > 0).astype(int)
    return frame


@pytest.fixture(scope="module")
def model() -> Pipeline:
    frame = _frame(300)
    pipeline = Pipeline(
        [("impute", SimpleImputer(strategy="median")), ("lr", LogisticRegression())]
    )
    return pipeline.fit(frame[FEATURES].astype("float64"), frame["good"])


@contextmanager
def serve(tmp_path, model) -> Iterator[tuple[str, object]]:
    """A gateway on a free port in a thread, ready; yields its URL and the app's gateway."""
    settings = GatewaySettings(
        model_name="yield-test",
        routing_path=tmp_path / "routing.json",
        log_url=f"sqlite:///{tmp_path / 'predictions.db'}",
        initial_champion=1,
        log_flush_seconds=0.05,
    )
    with serve_gateway(settings, lambda version: model) as (client, gateway):
        yield str(client.base_url).rstrip("/"), gateway


def _ok_requests(gateway) -> float:
    registry = gateway.metrics.registry
    return registry.get_sample_value("yieldops_gateway_requests_total", {"outcome": "ok"}) or 0.0


def test_records_are_json_with_nan_as_null():
    frame = _frame(3)
    frame.loc[1, "test_101"] = np.nan
    records = to_records(frame, FEATURES)
    assert [set(r) for r in records] == [{"lot_id", "wafer_id", *FEATURES}] * 3
    assert records[1]["test_101"] is None
    text = json.dumps(records, allow_nan=False)  # plain Python types, no NaN
    assert json.loads(text)[0]["x"] == int(frame.loc[0, "x"])


class SimulatedClock:
    """A monotonic clock that moves only when the replayer sleeps (answers take no time):
    the schedule the replayer keeps is then exact, whatever the machine is doing."""

    def __init__(self, stop: threading.Event | None = None, stop_at: float = math.inf) -> None:
        self.now = 0.0
        self.stop, self.stop_at = stop, stop_at

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds
        if self.stop is not None and self.now >= self.stop_at:
            self.stop.set()


def test_replay_paced_with_nan_and_looping(tmp_path, model):
    frame = _frame(7, seed=1)
    frame.loc[::2, "test_101"] = np.nan  # imputed by the model
    n, rate = 12, 40.0
    with serve(tmp_path, model) as (url, gateway):
        report = replay(url, frame, FEATURES, rate_per_s=rate, limit=n)
        assert _ok_requests(gateway) == n  # more than the rows: looped over the frame
    assert (report.sent, report.ok, report.failed, report.requests) == (n, n, 0, n)
    # On the real clock: no request left before its slot k / rate, and none overtook another.
    assert len(report.sent_at_s) == n and report.sent_at_s == sorted(report.sent_at_s)
    assert all(at >= k / rate for k, at in enumerate(report.sent_at_s))
    assert len(report.latencies_ms) == n and report.p50_ms <= report.p95_ms
    assert report.to_dict()["errors"] == {}


def test_replay_keeps_its_schedule(tmp_path, model):
    clock = SimulatedClock()
    with serve(tmp_path, model) as (url, _):
        report = replay(
            url, _frame(7), FEATURES, rate_per_s=40, limit=12, clock=clock, sleep=clock.sleep
        )
    assert report.sent_at_s == pytest.approx([k / 40 for k in range(12)])
    assert report.seconds == pytest.approx(11 / 40) and report.ok == 12


def test_replay_batches_and_duration(tmp_path, model):
    frame = _frame(50, seed=2)
    clock = SimulatedClock()
    with serve(tmp_path, model) as (url, _):
        limited = replay(url, frame, FEATURES, rate_per_s=200, batch_size=4, limit=10)
        timed = replay(
            url, frame, FEATURES, rate_per_s=40, batch_size=2, duration_s=0.5,
            clock=clock, sleep=clock.sleep,
        )  # fmt: skip
    assert (limited.sent, limited.ok, limited.requests) == (10, 10, 3)  # 4 + 4 + 2
    # a request of 2 dies every 0.05 s: ten of them, at 0 ... 0.45 s, none at or after 0.5 s
    assert timed.sent_at_s == pytest.approx([k * 0.05 for k in range(10)])
    assert timed.requests == 10 and timed.ok == timed.sent == 20


def test_stopped_gateway_counts_failures(tmp_path, model):
    frame = _frame(5, seed=3)
    with serve(tmp_path, model) as (url, _):
        assert replay(url, frame, FEATURES, rate_per_s=100, limit=2).ok == 2
    report = replay(url, frame, FEATURES, rate_per_s=100, limit=5, timeout=1.0)
    assert (report.sent, report.ok, report.failed, report.failed_requests) == (5, 0, 5, 5)
    assert sum(report.errors.values()) == 5 and report.latencies_ms == []
    assert report.p50_ms is None


def test_stop_event_ends_an_open_replay(tmp_path, model):
    stop = threading.Event()
    clock = SimulatedClock(stop, stop_at=0.3)
    with serve(tmp_path, model) as (url, _):
        report = replay(
            url, _frame(5), FEATURES, rate_per_s=20, stop=stop, clock=clock, sleep=clock.sleep
        )
    # requests at 0, 0.05, ... 0.25 s; stopped while waiting for the one at 0.3 s
    assert report.sent_at_s == pytest.approx([k * 0.05 for k in range(6)])
    assert (report.sent, report.ok, report.failed) == (6, 6, 0)


def test_stop_event_wakes_a_waiting_replay(tmp_path, model):
    """On the real clock, ``stop`` ends the wait for the next slot at once: set while the
    replayer waits an hour for its second request, the replay returns with one."""
    stop = threading.Event()
    with serve(tmp_path, model) as (url, gateway):
        stopper = threading.Thread(target=_stop_after_first_request, args=(gateway, stop))
        stopper.start()
        try:
            report = replay(url, _frame(5), FEATURES, rate_per_s=1 / 3600, stop=stop)
        finally:
            stop.set()
            stopper.join()
    assert (report.sent, report.ok, report.requests) == (1, 1, 1)


def _stop_after_first_request(gateway, stop: threading.Event) -> None:
    while not _ok_requests(gateway) and not stop.wait(0.01):
        pass
    stop.set()
