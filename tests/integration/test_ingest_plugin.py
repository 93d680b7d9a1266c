"""The Airflow pieces of ingest on their own: the deferrable sensor's trigger, the
notifier against an HTTP server on loopback, the Data Docs pages the plugin serves."""

from __future__ import annotations

import asyncio
import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import ClassVar

import pytest

from yieldops.synth import synthesize


@pytest.fixture
def home(tmp_path, monkeypatch, airflow_db):
    monkeypatch.setenv("YIELDOPS_HOME", str(tmp_path))
    return tmp_path


def test_trigger_waits_until_a_file_lands(home):
    from yieldops_airflow.triggers import NewStdfFilesTrigger

    async def first_event_after_landing():
        events = NewStdfFilesTrigger(poke_interval=0.2).run()
        waiting = asyncio.ensure_future(anext(events))
        await asyncio.sleep(1.0)
        assert not waiting.done()  # nothing landed yet: still waiting, without blocking the loop
        await asyncio.to_thread(synthesize, home / "landing" / "lot-a", lots=1, wafers_per_lot=1)
        event = await asyncio.wait_for(waiting, timeout=30)
        await events.aclose()
        return event

    event = asyncio.run(first_event_after_landing())
    assert event.payload == {"pending": ["lot-a/YO-7NM-ADC_S0-L001.stdf"]}


def test_sensor_trigger_serializes_for_the_triggerer():
    from yieldops_airflow.triggers import NewStdfFilesTrigger

    classpath, kwargs = NewStdfFilesTrigger(poke_interval=5).serialize()
    assert classpath == "yieldops_airflow.triggers.NewStdfFilesTrigger" and kwargs == {
        "poke_interval": 5
    }


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
