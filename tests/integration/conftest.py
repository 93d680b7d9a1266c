"""Integration fixtures: a moto server on loopback standing in for S3 and SQS."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest
import uvicorn

STARTUP_TIMEOUT = 60.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _answers(url: str) -> bool:
    try:
        urllib.request.urlopen(url, timeout=1).close()
    except urllib.error.HTTPError:
        return True  # an HTTP error status is an answer too
    except OSError:
        return False
    return True


def _stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@pytest.fixture(scope="session")
def moto_server() -> Iterator[str]:
    """The endpoint URL of a moto server (S3, SQS, ...) started for this test session."""
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    # moto logs every request: a file instead of a pipe, which nobody drains, would fill up
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + STARTUP_TIMEOUT
            while not _answers(f"{endpoint}/moto-api/"):
                if process.poll() is not None or time.monotonic() > deadline:
                    log.seek(0)
                    output = log.read().decode(errors="replace")[-2000:]
                    pytest.fail(f"moto server did not come up on {endpoint}:\n{output}")
                time.sleep(0.1)
            yield endpoint
        finally:
            _stop(process)


@pytest.fixture(scope="session")
def aws_client_kwargs(moto_server) -> dict[str, str]:
    """boto3 client arguments for the moto server; moto takes any keys, these are no secrets."""
    return {
        "endpoint_url": moto_server,
        "region_name": "us-east-1",
        "aws_access_key_id": "testing",
        "aws_secret_access_key": "testing",  # pragma: allowlist secret
    }


@pytest.fixture(scope="session")
def s3_client(aws_client_kwargs):
    import boto3

    return boto3.client("s3", **aws_client_kwargs)


@pytest.fixture(scope="session")
def sqs_client(aws_client_kwargs):
    import boto3

    return boto3.client("sqs", **aws_client_kwargs)


def notifying_queue(s3_client, sqs_client, bucket: str) -> str:
    """A queue that receives the bucket's ObjectCreated events under landing/; its URL."""
    from yieldops.landing.s3 import send_new_objects_to_queue

    queue = f"landed-{uuid.uuid4().hex[:12]}"
    return send_new_objects_to_queue(s3_client, sqs_client, bucket, "landing/", queue)


@pytest.fixture
def moto_connection(monkeypatch, aws_client_kwargs):
    """An Airflow AWS connection to the moto server, defined by environment; returns its id."""
    conn_id = "yieldops_moto"
    connection = {
        "conn_type": "aws",
        "login": aws_client_kwargs["aws_access_key_id"],
        "password": aws_client_kwargs["aws_secret_access_key"],
        "extra": {
            "endpoint_url": aws_client_kwargs["endpoint_url"],
            "region_name": aws_client_kwargs["region_name"],
        },
    }
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(connection))
    return conn_id


async def first_trigger_event(trigger):
    """The first event an Airflow trigger yields (then it is closed)."""
    events = trigger.run()
    try:
        return await anext(events)
    finally:
        await events.aclose()


@contextmanager
def serve_gateway(settings, loader, ready: bool = True) -> Iterator[tuple[httpx.Client, object]]:
    """A uvicorn server in a thread; yields an httpx client on it and the app's gateway
    once it answers (``ready``: once ``/readyz`` says 200)."""
    from yieldops.serving.app import create_app
    from yieldops.serving.mirror import STOP_SECONDS

    app = create_app(settings, loader=loader)
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(base_url=base, timeout=10) as client:
            deadline = time.monotonic() + 20
            while True:
                try:
                    status = client.get("/readyz").status_code
                    if status == 200 or not ready:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    raise TimeoutError("the gateway did not become ready")
                time.sleep(0.02)
            yield client, app.state.gateway
    finally:
        server.should_exit = True
        # shutting down, the gateway lets its mirror workers finish (up to twice STOP_SECONDS)
        thread.join(timeout=2 * STOP_SECONDS + 10)
        assert not thread.is_alive(), "the server thread did not stop"


def load_dag(dag_id: str):
    """A DAG of this project's dags/ folder, parsed as Airflow parses it (no import error)."""
    from airflow.dag_processing.dagbag import DagBag
    from tests.conftest import ROOT

    bag = DagBag(dag_folder=ROOT / "dags" / f"{dag_id}.py")
    assert not bag.import_errors
    return bag.dags[dag_id]


def task_states(run) -> dict[str, str]:
    """Task id -> state of a DAG run (mapped tasks: their first instance)."""
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session

    with create_session() as session:
        tis = session.query(TaskInstance).filter_by(dag_id=run.dag_id, run_id=run.run_id).all()
        return {ti.task_id: ti.state for ti in tis if ti.map_index < 1}


@pytest.fixture
def plugin_client(airflow_db) -> Iterator:
    """The yieldops plugin's app as the API server mounts it, called with an Airflow JWT."""
    from fastapi.testclient import TestClient

    from yieldops_plugin import YieldopsPlugin

    (app_spec,) = YieldopsPlugin.fastapi_apps
    headers = {"Authorization": f"Bearer {airflow_jwt()}"}
    with TestClient(app_spec["app"], headers=headers) as client:
        yield client


def airflow_jwt(role: str = "ADMIN") -> str:
    """A token Airflow's auth manager (the simple one, as in `airflow standalone`) accepts."""
    from airflow.api_fastapi.app import create_auth_manager
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser

    return create_auth_manager().generate_jwt(SimpleAuthManagerUser(username="reader", role=role))
