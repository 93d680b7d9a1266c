"""Run notes through a real Airflow API server on loopback."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from tests.conftest import ROOT
from tests.integration.conftest import free_port

USER = "yieldops"


@pytest.fixture
def api_server(tmp_path):
    """``airflow api-server`` with its own home, database and the project's DAGs."""
    port = free_port()
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(tmp_path / "airflow"),
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{USER}:admin",
        "PYTHONPATH": str(ROOT / "plugins"),
    }
    airflow = [sys.executable, "-m", "airflow"]
    subprocess.run([*airflow, "db", "migrate"], env=env, check=True, capture_output=True)
    subprocess.run([*airflow, "dags", "reserialize"], env=env, check=True, capture_output=True)
    log = open(tmp_path / "api-server.log", "wb")  # noqa: SIM115 - closed below
    server = subprocess.Popen(
        [*airflow, "api-server", "--port", str(port), "--host", "127.0.0.1"],
        env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_until_up(base, server, tmp_path / "api-server.log")
        passwords = Path(env["AIRFLOW_HOME"], "simple_auth_manager_passwords.json.generated")
        yield base, json.loads(passwords.read_text())[USER]
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
        log.close()


def _wait_until_up(base: str, server: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"api-server exited:\n{log.read_text()[-3000:]}")
        try:
            if requests.get(f"{base}/api/v2/monitor/health", timeout=2).ok:
                return
        except requests.ConnectionError:
            pass
        time.sleep(1)
    raise TimeoutError(f"api-server did not answer:\n{log.read_text()[-3000:]}")


def test_a_task_sets_the_run_note_through_the_rest_api(api_server, monkeypatch):
    from yieldops_airflow.notes import API_CONN_ID, set_run_note

    base, password = api_server
    token = requests.post(
        f"{base}/auth/token", json={"username": USER, "password": password}, timeout=10
    )
    headers = {"Authorization": f"Bearer {token.json()['access_token']}"}
    created = requests.post(
        f"{base}/api/v2/dags/stdf_ingest/dagRuns",
        json={"logical_date": None},
        headers=headers,
        timeout=10,
    )
    assert created.ok, created.text
    run_id = created.json()["dag_run_id"]
    host, port = base.removeprefix("http://").split(":")
    connection = {"conn_type": "http", "host": host, "port": int(port), "schema": "http",
                  "login": USER, "password": password}  # fmt: skip
    monkeypatch.setenv(f"AIRFLOW_CONN_{API_CONN_ID.upper()}", json.dumps(connection))

    assert set_run_note("stdf_ingest", run_id, "3 curated, 1 quarantined")

    run = requests.get(
        f"{base}/api/v2/dags/stdf_ingest/dagRuns/{run_id}", headers=headers, timeout=10
    )
    assert run.json()["note"] == "3 curated, 1 quarantined"


def test_without_the_connection_the_note_is_only_logged(monkeypatch):
    from yieldops_airflow.notes import API_CONN_ID, set_run_note

    monkeypatch.delenv(f"AIRFLOW_CONN_{API_CONN_ID.upper()}", raising=False)
    assert set_run_note("stdf_ingest", "manual__x", "note") is False
