"""End to end on the demo stack: files land, the three DAGs run in order (seen through
Airflow's REST API with a token from /auth/token), and a champion serves."""

from __future__ import annotations

from datetime import datetime

import httpx
from tests.e2e.conftest import DAGS, first_success, runs

from yieldops.demo.stack import MODEL


def _at(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _ingested_files(api: httpx.Client, run_id: str) -> int:
    """Mapped ``ingest`` task instances of a stdf_ingest run that succeeded (one per file)."""
    path = f"/dags/stdf_ingest/dagRuns/{run_id}/taskInstances"
    params = {"task_id": "ingest", "state": "success", "limit": 1000}
    return len(api.get(path, params=params).json()["task_instances"])


def _task_state(api: httpx.Client, dag_id: str, run: dict, task_id: str) -> str:
    """One task instance's state (a rollout has more task instances than a listing's page)."""
    path = f"/dags/{dag_id}/dagRuns/{run['dag_run_id']}/taskInstances/{task_id}"
    response = api.get(path)
    response.raise_for_status()
    return response.json()["state"]


def _started_by(api: httpx.Client, dag_id: str, run: dict) -> set[tuple[str, str]]:
    """(DAG, run) that emitted the asset events which started ``run``."""
    path = f"/dags/{dag_id}/dagRuns/{run['dag_run_id']}/upstreamAssetEvents"
    events = api.get(path).json()["asset_events"]
    assert events, f"{dag_id} {run['dag_run_id']} was not started by an asset event"
    return {(e["source_dag_id"], e["source_run_id"]) for e in events}


def test_the_three_dags_succeed_in_order(landed):
    training, rollout = (first_success(landed, d) for d in DAGS[1:])
    # Continuous ingest runs that found nothing end too: the ones that curated the lots.
    curated = {
        r["dag_run_id"]: (r, files)
        for r in runs(landed, "stdf_ingest")
        if r["state"] == "success" and (files := _ingested_files(landed, r["dag_run_id"]))
    }
    assert sum(files for _, files in curated.values()) == 3
    # In order: each run was started by an asset event the previous DAG's run emitted.
    assert _started_by(landed, "yield_training", training) <= {("stdf_ingest", r) for r in curated}
    assert _started_by(landed, "model_rollout", rollout) == {
        ("yield_training", training["dag_run_id"])
    }
    assert _at(training["start_date"]) <= _at(rollout["start_date"])
    for task_id in ("adc-local.offline_check", "promote"):
        assert _task_state(landed, "model_rollout", rollout, task_id) == "success", task_id
    assert "is champion" in rollout["note"]


def test_the_champion_serves_through_the_gateway(landed, stack):
    from mlflow import MlflowClient

    champion = int(MlflowClient(stack.mlflow_url).get_registered_model(MODEL).aliases["champion"])
    die = {"lot_id": "S0-L003", "wafer_id": "W01", "x": 0, "y": 0, "test_1000": 1.0}
    answer = httpx.post(f"{stack.gateway_url}/v1/predict", json=die, timeout=10)
    assert answer.status_code == 200
    (prediction,) = answer.json()["predictions"]
    assert (prediction["version"], prediction["role"]) == (champion, "champion")
    assert 0.0 <= prediction["probability"] <= 1.0


def test_the_rollouts_page_is_served_to_logged_in_users_only(landed, stack):
    """The API server mounts the plugin's app; the app itself checks Airflow's token."""
    page = f"{stack.airflow_url}/yieldops/rollouts/api"
    assert httpx.get(page, timeout=10).status_code == 401
    entries = httpx.get(page, headers=landed.headers, timeout=10)
    assert entries.status_code == 200
    assert {e["target"] for e in entries.json()} >= {"adc-local"}
