"""The prediction log never loses a row for another row's sake, on SQLite and PostgreSQL.

Die keys a caller can send (a lone surrogate, a NUL, a key longer than the column) used to
make a whole batch insert fail; now they are stored made valid, and a row the database
still refuses is the only one lost: counted, logged with the reason, and in the gateway's
``/metrics``.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from tests.conftest import POSTGRES_ADMIN_URL, throwaway_postgres_database

from yieldops.serving.app import create_app
from yieldops.serving.mirror import Copy, Mirror, MirrorWorker
from yieldops.serving.predlog import (
    PredictionLog,
    PredictionTable,
    dropped_copies,
    dropped_row,
    now,
    predictions,
    storable_text,
)
from yieldops.serving.settings import GatewaySettings

HOSTILE_KEYS = ("L1:W1:1:\ud800", "L1:W1:2:\x00", "L" * 300 + ":W1:3:3")


def row(die_key: str, request_id: str = "r1", **changes) -> dict:
    return {
        "request_id": request_id,
        "time": now(),
        "die_key": die_key,
        "version": 1,
        "role": "champion",
        "served": True,
        "prediction": 1,
        "probability": 0.9,
        "latency_ms": 2.0,
        "error": None,
        **changes,
    }


@pytest.fixture(scope="module")
def postgres_url():
    try:
        with throwaway_postgres_database() as url:
            yield url
    except sa.exc.OperationalError as exc:
        pytest.skip(f"PostgreSQL not reachable at {POSTGRES_ADMIN_URL}: {exc}")


@pytest.fixture(params=["sqlite", "postgresql"])
def log_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'predictions.db'}"
    url = request.getfixturevalue("postgres_url")
    table = PredictionTable(url)  # each test starts from empty tables
    with table.engine.begin() as conn:
        conn.execute(sa.text(f"TRUNCATE {predictions.name}, {dropped_copies.name}"))
    table.close()
    return url


def test_text_is_made_storable_for_every_backend():
    assert storable_text("a\ud800b", 10) == "a?b"
    assert storable_text("a\x00b", 10) == "ab"
    assert storable_text("é" * 300, 256) == "é" * 256  # characters, as the column counts them
    assert storable_text("plain", None) == "plain"


def test_hostile_die_keys_and_errors_are_stored_made_valid_with_their_batch(log_url):
    table = PredictionTable(log_url)
    batch = [row(f"L1:W1:{i}:0") for i in range(20)]
    batch += [row(key, error="bad \ud800\x00" + "e" * 2000) for key in HOSTILE_KEYS]
    try:
        assert table.write(batch) == 0
        stored = table.rows()
    finally:
        table.close()
    assert len(stored) == 23 and table.lost_rows == 0
    keys = [r["die_key"] for r in stored[20:]]
    assert keys == ["L1:W1:1:?", "L1:W1:2:", "L" * 256]
    assert {len(r["error"]) for r in stored[20:]} == {1000}


def test_a_row_the_database_refuses_is_the_only_one_lost(log_url, caplog):
    lost: list[int] = []
    table = PredictionTable(log_url, on_lost=lost.append)
    batch = [row(f"L1:W1:{i}:0", request_id=f"r{i}") for i in range(9)]
    batch.insert(5, row("L1:W1:99:0", request_id="unwritable", version=None))  # NOT NULL
    caplog.set_level(logging.ERROR, logger="yieldops.serving.predlog")
    try:
        assert table.write(batch) == 1
        stored = table.rows()
    finally:
        table.close()
    assert [r["request_id"] for r in stored] == [f"r{i}" for i in range(9)]
    assert table.lost_rows == 1 and lost == [1]
    [message] = [r.getMessage() for r in caplog.records]
    assert "a row lost (request 'unwritable', die 'L1:W1:99:0')" in message
    assert "IntegrityError" in message


def test_an_unreachable_database_loses_the_batch_at_once_counted(tmp_path):
    table = PredictionTable(f"sqlite:///{tmp_path / 'predictions.db'}")
    table.engine.dispose()
    table.engine = sa.create_engine(f"sqlite:///{tmp_path / 'no-such-folder' / 'p.db'}")
    assert table.write([row("L1:W1:1:1"), row("L1:W1:1:2")]) == 2
    assert table.lost_rows == 2


def test_the_writer_thread_writes_predictions_and_dropped_copies(log_url):
    log = PredictionLog(log_url, flush_seconds=0.01)
    try:
        log.add([row("L1:W1:1:1"), row("L1:W1:\ud800:2")])
        log.add([dropped_row(2, "challenger", 8, "backlog")], dropped_copies)
        log.flush()
        assert [r["die_key"] for r in log.rows()] == ["L1:W1:1:1", "L1:W1:?:2"]
        [dropped] = log.rows(dropped_copies)
    finally:
        log.close()
    assert (dropped["version"], dropped["dies"], dropped["reason"]) == (2, 8, "backlog")


def refuse(version: int):
    """A loader that has no version (module level: the settings of a worker pickle)."""
    raise LookupError(f"no version {version}")


class OneCopy:
    """The pipe of a mirror worker holding one copy, then closed."""

    def __init__(self, copy: Copy) -> None:
        self.copies = [copy]

    def next(self, deadline: float | None = None) -> Copy | None:
        if not self.copies:
            raise EOFError
        return self.copies.pop()


def test_a_mirror_worker_records_the_copies_it_cannot_score(tmp_path):
    settings = GatewaySettings(log_url=f"sqlite:///{tmp_path / 'predictions.db'}")
    worker = MirrorWorker(settings, refuse)
    body = b'[{"die_key": "L1:W1:1:1"}, {"die_key": "L1:W1:1:2"}]'
    copy = Copy("r1", body, (Mirror("challenger", 7, (0, 1)),), frozenset({1, 7}))
    reports = []
    try:
        assert not worker.run_window(OneCopy(copy), reports.append)
        [dropped] = worker.table.rows(dropped_copies)
    finally:
        worker.table.close()
    [report] = reports
    assert (report.dies, report.dropped, report.lost_rows) == (2, 2, 0)
    assert (dropped["version"], dropped["dies"], dropped["reason"]) == (7, 2, "not_loaded")


def test_the_gateway_exports_the_rows_its_log_lost(tmp_path):
    settings = GatewaySettings(
        log_url=f"sqlite:///{tmp_path / 'predictions.db'}",
        routing_path=tmp_path / "routing.json",
        initial_champion=1,
    )
    app = create_app(settings, loader=refuse)
    with TestClient(app) as client:
        gateway = app.state.gateway
        gateway.prediction_log.add([row("L1:W1:1:1", version=None), row("L1:W1:1:2")])
        gateway.prediction_log.flush()
        metrics = client.get("/metrics").text
    assert 'yieldops_gateway_prediction_log_lost_rows_total{writer="gateway"} 1.0' in metrics
    assert 'yieldops_gateway_prediction_log_lost_rows_total{writer="mirror"} 0.0' in metrics


def test_a_steady_trickle_of_rows_is_written_without_waiting_for_a_full_batch(tmp_path):
    """Rows arriving faster than ``flush_seconds`` apart are still written once the first
    has waited that long: a rollout step's window sees them while the traffic goes on."""
    log = PredictionLog(f"sqlite:///{tmp_path / 'p.db'}", batch_rows=10**6, flush_seconds=0.5)
    stop = threading.Event()

    def trickle() -> None:
        for i in itertools.count():
            if stop.wait(0.005):
                return
            log.add([row(f"L1:W1:{i}:0")])

    adder = threading.Thread(target=trickle)
    adder.start()
    try:
        deadline = time.monotonic() + 30  # a guard against a hang, not a speed check
        while not log.rows() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert log.rows() and adder.is_alive()
    finally:
        stop.set()
        adder.join()
        log.close()
