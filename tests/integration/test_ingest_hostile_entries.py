"""stdf_ingest with hostile entries beside good files (dag.test(), real files, real ledger):
the good files are curated, each hostile entry is rejected once and named in the run's
report, and the next run records nothing again."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import ClassVar

import pytest
from tests.integration.conftest import load_dag, task_states

from yieldops.landing.ledger import CURATED, REJECTED, Ledger
from yieldops.synth import synthesize

HOSTILE = {
    "outside.stdf": "outside the landing root",
    "dangling.stdf": "dangling symbolic link",
    "pipe.stdf": "a named pipe (FIFO), not a regular file",
    "tester-a/bad-\\xff-name.stdf": "the name is not valid UTF-8",
}


@pytest.fixture
def plant(tmp_path, monkeypatch, airflow_db) -> Path:
    """A yieldops home whose landing zone holds two good lots and four hostile entries."""
    home = tmp_path / "home"
    landing = home / "landing"
    monkeypatch.setenv("YIELDOPS_HOME", str(home))
    monkeypatch.setenv("YIELDOPS_INGEST_TRIGGER", "sensor")
    good = synthesize(landing / "tester-a", lots=2, wafers_per_lot=1, seed=4)
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "lot.stdf").write_bytes(good[0].read_bytes())
    (landing / "outside.stdf").symlink_to(tmp_path / "elsewhere" / "lot.stdf")
    (landing / "dangling.stdf").symlink_to("gone.stdf")
    os.mkfifo(landing / "pipe.stdf")
    (landing / "tester-a" / os.fsdecode(b"bad-\xff-name.stdf")).write_bytes(b"x")
    return home


class _Notifications(BaseHTTPRequestHandler):
    received: ClassVar[list[dict]] = []

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        _Notifications.received.append(json.loads(body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def notifications(monkeypatch) -> Iterator[list[dict]]:
    """Messages the runs send to the ``yieldops_notify`` connection (an HTTP server here)."""
    server = HTTPServer(("127.0.0.1", 0), _Notifications)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    connection = {"conn_type": "http", "host": "127.0.0.1", "port": server.server_address[1],
                  "schema": "http", "extra": {"endpoint": "/notify"}}  # fmt: skip
    monkeypatch.setenv("AIRFLOW_CONN_YIELDOPS_NOTIFY", json.dumps(connection))
    _Notifications.received = []
    try:
        yield _Notifications.received
    finally:
        server.shutdown()
        thread.join()


def test_good_files_are_curated_beside_hostile_entries_reported_once(
    plant, notifications, monkeypatch
):
    run = load_dag("stdf_ingest").test()

    # Degraded, not blocked: the good files are curated, the run fails on its report.
    assert run.state == "failed"
    states = task_states(run)
    assert states["claim"] == "success" and states["ingest"] == "success"
    assert states["report"] == "failed"
    ledger = Ledger(f"sqlite:///{plant / 'ledger.db'}")
    entries = {e.source_key: e for e in ledger.entries()}
    assert sorted(e.lot_id for e in entries.values() if e.status == CURATED) == [
        "S4-L001",
        "S4-L002",
    ]
    rejected = {key: e for key, e in entries.items() if e.status == REJECTED}
    assert rejected.keys() == HOSTILE.keys()
    assert {e.dag_run_id for e in rejected.values()} == {run.run_id}

    # The report names every rejected entry with its reason.
    (message,) = notifications
    assert message["subject"] == "stdf_ingest: 4 file(s) not curated"
    reported = {f["key"]: f for f in message["files"]}
    assert reported.keys() == HOSTILE.keys()
    for key, reason in HOSTILE.items():
        assert reported[key]["status"] == REJECTED and reason in reported[key]["reason"]

    # The next run records nothing again: it ends green and tells nobody.
    monkeypatch.setenv("YIELDOPS_INGEST_TRIGGER", "sweep")
    second = load_dag("stdf_ingest").test()
    assert second.state == "success"
    assert len(notifications) == 1
    assert {k: (e.status, e.dag_run_id) for k, e in entries.items()} == {
        e.source_key: (e.status, e.dag_run_id) for e in ledger.entries()
    }
    ledger.close()
