"""A run of stdf_ingest triggered by hand on the demo stack (scheduler, triggerer, workers):
the continuous run waiting for files gives way to it, and the notes say so."""

from __future__ import annotations

import time
import uuid
from datetime import datetime

import httpx

DAG_ID = "stdf_ingest"
# Generous bounds for a loaded machine; a run that gives way takes seconds.
WAITING_DEADLINE_SECONDS = 180
RUN_DEADLINE_SECONDS = 120


def _task_state(api: httpx.Client, run_id: str, task_id: str) -> str | None:
    response = api.get(f"/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances/{task_id}")
    return response.json()["state"] if response.status_code == 200 else None


def _run(api: httpx.Client, run_id: str) -> dict:
    return api.get(f"/dags/{DAG_ID}/dagRuns/{run_id}").raise_for_status().json()


def _waiting_run(api: httpx.Client) -> dict:
    """The continuous run whose sensor is deferred, waiting for files."""
    deadline = time.monotonic() + WAITING_DEADLINE_SECONDS
    while True:
        runs = api.get(f"/dags/{DAG_ID}/dagRuns", params={"state": "running"}).json()["dag_runs"]
        for run in runs:
            if _task_state(api, run["dag_run_id"], "wait_for_files") == "deferred":
                return run
        assert time.monotonic() < deadline, f"no {DAG_ID} run waiting for files: {runs}"
        time.sleep(2)


def _finished(api: httpx.Client, run_id: str) -> dict:
    deadline = time.monotonic() + RUN_DEADLINE_SECONDS
    while (run := _run(api, run_id))["state"] not in ("success", "failed"):
        assert time.monotonic() < deadline, f"{run_id} still {run['state']}"
        time.sleep(2)
    return run


def test_a_run_triggered_by_hand_does_not_wait_for_the_continuous_run(stack):
    api = stack.airflow()
    waiting = _waiting_run(api)
    assert waiting["note"].startswith("Waiting for new STDF files")

    run_id = f"by_hand_{uuid.uuid4().hex[:8]}"
    body = {"dag_run_id": run_id, "logical_date": None, "conf": {"dry_run": True}}
    api.post(f"/dags/{DAG_ID}/dagRuns", json=body).raise_for_status()
    by_hand = _finished(api, run_id)

    gave_way = _run(api, waiting["dag_run_id"])
    assert (gave_way["state"], by_hand["state"]) == ("success", "success")
    assert _task_state(api, waiting["dag_run_id"], "wait_for_files") == "skipped"
    assert gave_way["note"].startswith("nothing ingested: gave way to 1 run(s) triggered by hand")
    assert _at(by_hand["start_date"]) >= _at(gave_way["end_date"])  # one run at a time


def _at(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))
