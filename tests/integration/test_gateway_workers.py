"""``python -m yieldops.serving`` with ``YIELDOPS_GATEWAY_WORKERS=2``: two worker processes
on one port serving one routing table, a version registered in a local MLflow store.

Every probe opens a new connection, so the kernel hands it to either worker; ``/readyz``
names the worker (``pid``) and the table it serves."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import mlflow
import numpy as np
import pandas as pd
import pytest
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from tests.integration.conftest import _stop, free_port

from yieldops.serving.predlog import PredictionTable
from yieldops.serving.settings import GatewaySettings
from yieldops.training import registry

TOKEN = "workers-t0ken"
ADMIN = {"Authorization": f"Bearer {TOKEN}"}
COLUMNS = ["test_100", "test_101", "x", "y"]
MODEL = "yield-WK"
WORKERS = 2
# How long to look for every worker and its table: a bound for a stuck test only.
PROBE_SECONDS = 120.0


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> tuple[Path, str]:
    """A local MLflow store holding versions 1 and 2 of ``MODEL`` (one logged model)."""
    import mlflow.tracking._tracking_service.utils as tracking_state

    home = tmp_path_factory.mktemp("workers")
    previous = tracking_state._tracking_uri  # unset stays unset: later tests read the env
    try:
        experiment = registry.open_experiment("WK", home, registry.default_tracking_uri(home))
        rng = np.random.default_rng(0)
        frame = pd.DataFrame(rng.normal(size=(100, len(COLUMNS))), columns=COLUMNS)
        model = Pipeline([("impute", SimpleImputer()), ("classify", LogisticRegression())])
        model.fit(frame, (frame["test_100"] > 0).astype(int))
        with mlflow.start_run(experiment_id=experiment) as run:
            registry.log_model(model, frame)
        for _ in range(2):
            registry.register_challenger(run.info.run_id, MODEL, {"passed": True})
        yield home, mlflow.get_tracking_uri()
    finally:
        mlflow.set_tracking_uri(previous)


@pytest.fixture()
def gateway(store, tmp_path):
    """The gateway process (uvicorn's parent) and its settings; stopped by its pid, and no
    worker may outlive it."""
    home, tracking_uri = store
    settings = GatewaySettings(
        model_name=MODEL,
        routing_path=tmp_path / "routing.json",
        log_url=f"sqlite:///{tmp_path / 'predictions.db'}",
        admin_token=TOKEN,
        initial_champion=1,
        mlflow_tracking_uri=tracking_uri,
        mirror_processes=0,  # copies are dropped, counted: the mirror is not the point here
        workers=WORKERS,
        port=free_port(),
    )
    env = {
        # Untraced, as the rollout's gateway: the follower is measured by its unit tests.
        **{k: v for k, v in os.environ.items() if k != "COVERAGE_PROCESS_CONFIG"},
        "YIELDOPS_HOME": str(home),
        **settings.to_environment(),
    }
    process = subprocess.Popen([sys.executable, "-m", "yieldops.serving"], env=env)
    workers: set[int] = set()
    try:
        yield process, settings, workers
    finally:
        _stop(process)
        assert not [pid for pid in workers if _alive(pid)], "a worker outlived the gateway"


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie waiting for its parent does not)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def new_connections(url: str) -> httpx.Client:
    """A client that opens a new connection for every request."""
    return httpx.Client(
        base_url=url,
        timeout=10,
        headers={"Connection": "close"},
        limits=httpx.Limits(max_keepalive_connections=0),
    )


def _tables_by_worker(
    process: subprocess.Popen, client: httpx.Client, until, pause: float = 0.05
) -> dict[int, list[dict]]:
    """Every table each worker answered ``/readyz`` with, in order, probing every ``pause``
    seconds until ``until(tables)``."""
    tables: dict[int, list[dict]] = {}
    deadline = time.monotonic() + PROBE_SECONDS
    while time.monotonic() < deadline:
        assert process.poll() is None, "the gateway exited"
        try:
            answer = client.get("/readyz").json()
        except httpx.TransportError:  # not listening yet
            answer = {}
        if "routing" in answer:
            tables.setdefault(answer["pid"], []).append(answer["routing"])
        if until(tables):
            return tables
        time.sleep(pause)
    raise AssertionError(f"not every worker answered as expected: {tables}")


def _all_workers_serve(mode: str):
    return lambda tables: (
        len(tables) == WORKERS and all(seen[-1]["mode"] == mode for seen in tables.values())
    )


def test_every_worker_serves_the_table_one_worker_changed(gateway):
    process, settings, workers = gateway
    admin = httpx.Client(base_url=settings.url, headers=ADMIN, timeout=30)  # one connection
    with new_connections(settings.url) as probes, admin:
        tables = _tables_by_worker(process, probes, _all_workers_serve("off"))
        workers.update(tables)
        assert len(workers) == WORKERS and process.pid not in workers

        change = {"challenger": 2, "mode": "canary", "weight": 50}
        assert admin.put("/v1/routing", json=change).status_code == 200
        _tables_by_worker(process, probes, _all_workers_serve("canary"))

        dies = [{"die_key": f"LOT1:1:{i}:0", "test_100": i - 10.0} for i in range(20)]
        for die in dies:  # either worker answers; each writes its own rows to the one log
            assert probes.post("/v1/predict", json=die).status_code == 200

        rollback = admin.post("/v1/routing/rollback")
        assert rollback.status_code == 200 and rollback.json()["mode"] == "off"
        returned = time.perf_counter()
        after = _tables_by_worker(process, probes, _all_workers_serve("off"), pause=0.002)
        reached = time.perf_counter() - returned
        # Once a worker answers with the rolled-back table it never answers with the old.
        for seen in after.values():
            modes = [table["mode"] for table in seen]
            assert "canary" not in modes[modes.index("off") :]
        print(f"\nthe rollback reached every worker {reached * 1000:.0f} ms after it returned")

    log = PredictionTable(settings.log_url)
    try:
        _until(lambda: len(log.rows(served=True)) == len(dies))
        assert {row["die_key"] for row in log.rows(served=True)} == {d["die_key"] for d in dies}
    finally:
        log.close()


def _until(condition, timeout: float = 60.0) -> None:
    """Waits for ``condition``, polled (a bound for a stuck test, not a timing claim)."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition never held"
        time.sleep(0.05)
