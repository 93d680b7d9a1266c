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


@pytest.fixture(scope="module")
def api_server(airflow_db, tmp_path_factory):
    """``airflow api-server`` on this session's Airflow home and database (runs made by
    ``dag.test()`` here are the API's runs) with the project's DAGs; its URL and a password."""
    port = free_port()
    env = {
        **os.environ,
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{USER}:admin",
        "PYTHONPATH": str(ROOT / "plugins"),
    }
    airflow = [sys.executable, "-m", "airflow"]
    subprocess.run([*airflow, "dags", "reserialize"], env=env, check=True, capture_output=True)
    log_path = tmp_path_factory.mktemp("api-server") / "api-server.log"
    log = open(log_path, "wb")  # noqa: SIM115 - closed below
    server = subprocess.Popen(
        [*airflow, "api-server", "--port", str(port), "--host", "127.0.0.1"],
        env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_until_up(base, server, log_path)
        # the home Airflow runs from here (airflow_db names the first import's of conftest)
        passwords = Path(os.environ["AIRFLOW_HOME"], "simple_auth_manager_passwords.json.generated")
        yield base, json.loads(passwords.read_text())[USER]
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
        log.close()


@pytest.fixture
def api_connection(api_server, monkeypatch) -> dict[str, str]:
    """The ``yieldops_airflow_api`` connection to the API server; REST headers for the test."""
    from yieldops_airflow.notes import API_CONN_ID

    base, password = api_server
    host, port = base.removeprefix("http://").split(":")
    connection = {"conn_type": "http", "host": host, "port": int(port), "schema": "http",
                  "login": USER, "password": password}  # fmt: skip
    monkeypatch.setenv(f"AIRFLOW_CONN_{API_CONN_ID.upper()}", json.dumps(connection))
    token = requests.post(
        f"{base}/auth/token", json={"username": USER, "password": password}, timeout=10
    )
    return {"Authorization": f"Bearer {token.json()['access_token']}"}


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


def test_a_task_sets_the_run_note_through_the_rest_api(api_server, api_connection):
    from yieldops_airflow.notes import set_run_note

    base, _ = api_server
    created = requests.post(
        f"{base}/api/v2/dags/stdf_ingest/dagRuns",
        json={"logical_date": None},
        headers=api_connection,
        timeout=10,
    )
    assert created.ok, created.text
    run_id = created.json()["dag_run_id"]

    assert set_run_note("stdf_ingest", run_id, "3 curated, 1 quarantined")

    assert _note(base, "stdf_ingest", run_id, api_connection) == "3 curated, 1 quarantined"


def test_a_rollout_of_a_model_mlflow_lacks_fails_at_once_and_says_what_exists(
    api_server, api_connection, tmp_path, monkeypatch
):
    """The form's 'restore v1' of a model never registered: no retry, a note naming what
    the registry has."""
    import mlflow
    from mlflow import MlflowClient
    from tests.integration.conftest import load_dag, task_states

    from yieldops.training import registry

    monkeypatch.setenv("YIELDOPS_HOME", str(tmp_path))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", registry.default_tracking_uri(tmp_path))
    registry.use_tracking_uri(registry.default_tracking_uri(tmp_path))
    MlflowClient().create_registered_model("yield-YO-7NM-ADC")
    try:
        run = load_dag("model_rollout").test(
            run_conf={"model": "yield-YO-28NM-PMIC", "version": 1, "strategy": "restore"}
        )
    finally:
        mlflow.set_tracking_uri(None)

    assert run.state == "failed"
    assert task_states(run)["plan"] == "failed" and task_states(run)["rollback"] == "success"
    assert _try_number(run, "plan") == 1  # a missing model is not retried
    base, _ = api_server
    assert _note(base, "model_rollout", run.run_id, api_connection) == (
        "Not rolled out: model 'yield-YO-28NM-PMIC' is not registered; registered: yield-YO-7NM-ADC"
    )


def _note(base: str, dag_id: str, run_id: str, headers: dict[str, str]) -> str | None:
    run = requests.get(f"{base}/api/v2/dags/{dag_id}/dagRuns/{run_id}", headers=headers, timeout=10)
    return run.json()["note"]


def _try_number(run, task_id: str) -> int:
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session

    with create_session() as session:
        ti = session.query(TaskInstance).filter_by(run_id=run.run_id, task_id=task_id).one()
        return ti.try_number


def test_without_the_connection_the_note_is_only_logged(monkeypatch):
    from yieldops_airflow.notes import API_CONN_ID, set_run_note

    monkeypatch.delenv(f"AIRFLOW_CONN_{API_CONN_ID.upper()}", raising=False)
    assert set_run_note("stdf_ingest", "manual__x", "note") is False
