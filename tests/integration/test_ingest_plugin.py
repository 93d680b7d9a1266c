"""The Airflow pieces of ingest on their own: the deferrable sensor's trigger (files land,
or a queued run makes it give way) and its run notes, the notifier against an HTTP server
on loopback, the Data Docs pages the plugin serves."""

from __future__ import annotations

import asyncio
import json
import os
import threading
import uuid
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import ClassVar

import pytest

from yieldops.synth import synthesize


@pytest.fixture
def home(tmp_path, monkeypatch, airflow_db):
    monkeypatch.setenv("YIELDOPS_HOME", str(tmp_path))
    return tmp_path


@contextmanager
def airflow_for_triggers():
    """What a trigger may ask of Airflow (Task SDK calls), served as dag.test() serves its
    triggers: Airflow's in-process supervisor and Execution API on the real metadata database."""
    import psutil
    import structlog
    from airflow.sdk.execution_time.supervisor import (
        InProcessSupervisorComms,
        InProcessTestSupervisor,
        set_supervisor_comms,
    )

    supervisor = InProcessTestSupervisor(
        id=uuid.uuid4(), pid=os.getpid(), process=psutil.Process(),
        process_log=structlog.get_logger().bind(), client=InProcessTestSupervisor._api_client(),
    )  # fmt: skip
    supervisor.comms = InProcessSupervisorComms(supervisor=supervisor)
    with set_supervisor_comms(supervisor.comms):
        yield


def first_event_after(trigger, change) -> object:
    """The trigger's first event once ``change()`` is done; until then it must keep waiting."""

    async def scenario():
        waiting = asyncio.ensure_future(anext(trigger.run()))
        try:
            await asyncio.sleep(1.0)
            assert not waiting.done(), f"did not wait: {waiting.result()}"
            await asyncio.to_thread(change)
            return await asyncio.wait_for(waiting, timeout=30)
        finally:
            waiting.cancel()

    with airflow_for_triggers():
        return asyncio.run(scenario())


def add_run(dag_id: str, state: str) -> None:
    from airflow.models.dagrun import DagRun
    from airflow.sdk import timezone
    from airflow.utils.session import create_session
    from airflow.utils.types import DagRunType

    run_id = f"{state}__{uuid.uuid4().hex[:8]}"
    with create_session() as session:
        session.add(
            DagRun(dag_id=dag_id, run_id=run_id, run_type=DagRunType.MANUAL, state=state,
                   run_after=timezone.utcnow())
        )  # fmt: skip


@pytest.fixture
def waiting_trigger(home):
    """The sensor's trigger for a DAG whose only run is the one waiting in the sensor."""
    from yieldops_airflow.triggers import NewStdfFilesTrigger

    dag_id = f"ingest_{uuid.uuid4().hex[:8]}"
    add_run(dag_id, "running")
    return NewStdfFilesTrigger(dag_id, poke_interval=0.2)


def test_trigger_waits_until_a_file_lands(home, waiting_trigger):
    def land():
        synthesize(home / "landing" / "lot-a", lots=1, wafers_per_lot=1)

    event = first_event_after(waiting_trigger, land)
    assert event.payload == {"pending": ["lot-a/YO-7NM-ADC_S0-L001.stdf"]}


def test_trigger_gives_way_to_a_queued_run(waiting_trigger):
    """A run triggered by hand is queued behind the waiting one (one run at a time): the
    wait ends skipped, in the triggerer, and says for how many runs it gave way."""
    from airflow.triggers.base import TaskSkippedEvent

    from yieldops_airflow.triggers import GAVE_WAY_KEY

    event = first_event_after(waiting_trigger, lambda: add_run(waiting_trigger.dag_id, "queued"))
    assert isinstance(event, TaskSkippedEvent) and event.xcoms == {GAVE_WAY_KEY: 1}


def test_sensor_trigger_serializes_for_the_triggerer():
    from yieldops_airflow.triggers import NewStdfFilesTrigger

    classpath, kwargs = NewStdfFilesTrigger("stdf_ingest", poke_interval=5).serialize()
    assert classpath == "yieldops_airflow.triggers.NewStdfFilesTrigger"
    assert kwargs == {"dag_id": "stdf_ingest", "poke_interval": 5}


def test_notes_say_what_the_ingest_run_waits_for_and_why_it_ended():
    from collections import Counter

    from yieldops_airflow.ingest import outcome_note
    from yieldops_airflow.sensors import NewStdfFilesSensor

    sensor = NewStdfFilesSensor(task_id="wait_for_files", poke_interval=5, timeout=3600)
    assert sensor.waiting_note() == (
        "Waiting for new STDF files: looks every 5 s, ends skipped after 60 min without any. "
        "A run triggered by hand does not wait for this one: every 5 s this run looks for one, "
        "gives way (ends skipped) and the run triggered by hand starts."
    )
    assert outcome_note(Counter(), gave_way_to=1).startswith(
        "nothing ingested: gave way to 1 run(s) triggered by hand"
    )
    assert outcome_note(Counter(curated=2, quarantined=1), None) == "2 curated, 1 quarantined"
    assert outcome_note(Counter(), None) == "nothing to ingest"


class _Hook(BaseHTTPRequestHandler):
    received: ClassVar[list[dict]] = []

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        _Hook.received.append({"path": self.path, "json": json.loads(body)})
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


def test_notifier_posts_to_the_connection_endpoint(monkeypatch):
    from yieldops_airflow.notifiers import YieldopsNotifier

    server = HTTPServer(("127.0.0.1", 0), _Hook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        port = server.server_address[1]
        connection = {"conn_type": "http", "host": "127.0.0.1", "port": port, "schema": "http",
                      "extra": {"endpoint": "/hooks/yield"}}  # fmt: skip
        monkeypatch.setenv("AIRFLOW_CONN_YIELDOPS_NOTIFY", json.dumps(connection))
        YieldopsNotifier().send("stdf_ingest: 1 file(s) not curated", {"run_id": "r1"})
    finally:
        server.shutdown()
        thread.join()
    assert _Hook.received == [
        {
            "path": "/hooks/yield",
            "json": {"subject": "stdf_ingest: 1 file(s) not curated", "run_id": "r1"},
        }
    ]


def test_notifier_without_connection_logs(capfd, caplog, monkeypatch):
    from yieldops_airflow.notifiers import YieldopsNotifier

    monkeypatch.delenv("AIRFLOW_CONN_YIELDOPS_NOTIFY", raising=False)
    YieldopsNotifier().send("subject", {"run_id": "r2"})
    out, err = capfd.readouterr()
    assert '"run_id": "r2"' in out + err + caplog.text


def test_plugin_serves_data_docs_pages(home, plugin_client):
    from yieldops_plugin import YieldopsPlugin

    page = home / "data-docs" / "runs" / "r1" / "page.html"
    page.parent.mkdir(parents=True)
    page.write_text("<html>validation of r1</html>")
    response = plugin_client.get("/data-docs/runs/r1/page.html")
    assert YieldopsPlugin.fastapi_apps[0]["url_prefix"] == "/yieldops"
    assert response.status_code == 200 and "validation of r1" in response.text


def test_plugin_refuses_paths_outside_the_docs(home, plugin_client):
    (home / "secret.txt").write_text("not a doc")
    assert plugin_client.get("/data-docs/../secret.txt").status_code == 404
    assert plugin_client.get("/data-docs/%2e%2e/secret.txt").status_code == 404
    assert plugin_client.get("/data-docs/runs/nope.html").status_code == 404


@pytest.mark.parametrize("path", ["/data-docs/index.html", "/rollouts/", "/rollouts/api"])
def test_plugin_pages_need_an_airflow_login(home, path):
    """Airflow does not authenticate plugin apps; ours refuse anonymous and forged callers."""
    from fastapi.testclient import TestClient

    from yieldops_plugin import YieldopsPlugin

    with TestClient(YieldopsPlugin.fastapi_apps[0]["app"]) as client:
        assert client.get(path).status_code == 401
        forged = {"Authorization": "Bearer not-a-token"}
        assert client.get(path, headers=forged).status_code == 403
        client.cookies.set("_token", "not-a-token")  # the UI's session cookie
        assert client.get(path).status_code == 403


def test_plugin_pages_follow_airflow_variable_overrides(home, plugin_client, monkeypatch, tmp_path):
    """The pages read the settings as tasks do: an Airflow Variable overrides the
    environment (here the Data Docs folder, as Variable ``yieldops_docs_dir``)."""
    elsewhere = tmp_path / "docs-by-variable"
    (elsewhere / "runs").mkdir(parents=True)
    (elsewhere / "runs" / "r2.html").write_text("<html>validation of r2</html>")
    monkeypatch.setenv("AIRFLOW_VAR_YIELDOPS_DOCS_DIR", str(elsewhere))

    response = plugin_client.get("/data-docs/runs/r2.html")

    assert response.status_code == 200 and "validation of r2" in response.text
