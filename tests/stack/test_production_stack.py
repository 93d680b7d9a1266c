"""The production configuration end to end, seen through Airflow's REST API: files land on
S3, their notifications start stdf_ingest through SQS, two Celery workers share the mapped
ingests, yield_training and model_rollout follow; then a worker dies in the middle of an
ingest, and another dies holding tasks it never started: every file is still ingested
exactly once."""

from __future__ import annotations

import json
import os
import signal
import time
from collections import Counter
from types import SimpleNamespace

import httpx
import pytest
from tests.e2e.conftest import first_success
from tests.e2e.test_pipeline import _started_by
from tests.stack.production import (
    ProductionStack,
    follow_pipeline,
    ingest_batch,
    set_paused,
    synthetic_files,
    wait_ingested,
)

from yieldops.demo.processes import descendants

BATCH = 20  # files, one small lot each
FAULT_BATCH = 4  # lots of two wafers: an ingest runs long enough to be caught running
# The scheduler's event when it queues again a task queued longer than task_queued_timeout.
REQUEUED = "stuck in queued reschedule"


@pytest.fixture(scope="module")
def first_batch(stack):
    """A batch landed and followed until no DAG run is left (a champion serves by then)."""
    keys, result = ingest_batch(stack, synthetic_files(stack, BATCH), timeout=600)
    print(f"ingested: {result.describe()}")
    follow_pipeline(stack, timeout=1200)
    return SimpleNamespace(keys=keys, result=result)


def test_a_batch_runs_through_the_three_dags_on_s3_events(stack, api, first_batch):
    entries = _ledger_entries(stack, first_batch.keys)
    ingest_runs = {e.dag_run_id for e in entries}
    for run_id in ingest_runs:
        run = _get(api, f"/dags/stdf_ingest/dagRuns/{run_id}")
        assert run["run_type"] == "asset_triggered", run
        events = _get(api, f"/dags/stdf_ingest/dagRuns/{run_id}/upstreamAssetEvents")
        # The asset watcher's SQS trigger, not a schedule or another DAG, made the event.
        assert events["asset_events"], run_id
        for event in events["asset_events"]:
            assert event["uri"].rstrip("/") == stack.landing_url, event
            assert event["extra"]["from_trigger"], event

    training = first_success(api, "yield_training")
    assert _started_by(api, "yield_training", training) <= {("stdf_ingest", r) for r in ingest_runs}
    rollout = first_success(api, "model_rollout")
    assert _started_by(api, "model_rollout", rollout) == {
        ("yield_training", training["dag_run_id"])
    }
    assert "is champion" in rollout["note"]
    assert httpx.get(f"{stack.gateway_url}/readyz", timeout=10).status_code == 200


def test_the_mapped_ingests_ran_on_both_workers(stack, api, first_batch):
    ingests = _successful_ingests(api)
    assert len(ingests) == BATCH
    assert {ti["hostname"] for ti in ingests} == set(stack.worker_names)
    assert all(ti["pid"] for ti in ingests)


def test_every_file_was_ingested_exactly_once(stack, api, first_batch):
    _assert_exactly_once(stack, api, first_batch.keys)


def test_a_killed_worker_s_ingest_is_retried_on_the_other_worker(stack, api, first_batch):
    set_paused(stack, ["yield_training"], True)  # ingest alone: training would slow it down
    try:
        keys = stack.land(synthetic_files(stack, FAULT_BATCH, first_lot=BATCH, wafers=2))
        victim = _running_ingest(api, stack.worker_names, timeout=360)
        stack.worker(victim["hostname"]).kill()  # the worker's group and its task processes

        run = _wait_finished(api, victim["dag_run_id"], timeout=480)
        assert run["state"] == "success", run
        tries = _get(
            api,
            f"/dags/stdf_ingest/dagRuns/{victim['dag_run_id']}/taskInstances/ingest/"
            f"{victim['map_index']}/tries",
        )["task_instances"]
        first, last = tries[0], tries[-1]
        assert (first["hostname"], first["state"]) == (victim["hostname"], "failed"), tries
        assert last["state"] == "success", tries
        assert last["hostname"] in set(stack.worker_names) - {victim["hostname"]}, tries
        _assert_exactly_once(stack, api, [*first_batch.keys, *keys])
    finally:
        set_paused(stack, ["yield_training"], False)


def test_tasks_a_lost_worker_took_but_never_started_are_queued_again(stack, api, first_batch):
    """A worker takes tasks from the broker and dies before any of them starts (its task
    processes frozen, then the worker killed): Airflow still sees them queued and Redis keeps
    their messages unacknowledged. The scheduler queues them again after
    ``task_queued_timeout`` and the other worker runs them."""
    for name in stack.worker_names:  # the test before killed one
        if stack.worker(name).running_process() is None:
            stack.restart_worker(name)
    victim, survivor = stack.worker_names
    set_paused(stack, ["yield_training"], True)
    try:
        _freeze_task_processes(stack, victim)
        keys = stack.land(synthetic_files(stack, FAULT_BATCH, first_lot=BATCH + FAULT_BATCH))
        held = _until(lambda: _held_by(stack, victim), timeout=360)
        stack.worker(victim).kill()
        runs = {run_id for run_id, _, _ in held}
        for run_id in runs:
            assert _wait_finished(api, run_id, timeout=480)["state"] == "success"
        for run_id, task_id, map_index in held:
            path = f"/dags/stdf_ingest/dagRuns/{run_id}/taskInstances/{task_id}"
            ti = _get(api, f"{path}/{map_index}" if map_index >= 0 else path)
            assert (ti["state"], ti["hostname"]) == ("success", survivor), ti
        requeued = {
            (e["run_id"], e["task_id"], e["map_index"])
            for e in _get(api, "/eventLogs", dag_id="stdf_ingest", event=REQUEUED, limit=1000)[
                "event_logs"
            ]
            if e["run_id"] in runs
        }
        assert held <= requeued, (held, requeued)
        wait_ingested(stack, keys, timeout=480)
        _assert_exactly_once(stack, api, _landed(stack))
    finally:
        set_paused(stack, ["yield_training"], False)


# -- faults ----------------------------------------------------------------------------------


def _freeze_task_processes(stack: ProductionStack, worker: str) -> None:
    """SIGSTOP the worker's pool processes: the worker still takes tasks from the broker,
    but none of them starts (none reports running), as if it died right after taking them."""
    for pid in descendants(stack.worker(worker).running_process().pid):
        os.kill(pid, signal.SIGSTOP)


def _held_by(stack: ProductionStack, worker: str) -> set[tuple[str, str, int]]:
    """(run id, task id, map index) of the Airflow tasks whose Celery messages ``worker``
    has taken (reserved or executing), asked through Celery's remote control."""
    from celery import Celery

    app = Celery(broker=stack.redis_url)
    try:
        inspect = app.control.inspect(destination=[stack.worker_node(worker)], timeout=5)
        requests = [r for found in (inspect.reserved(), inspect.active()) for r in
                    (found or {}).get(stack.worker_node(worker), [])]  # fmt: skip
    finally:
        app.close()
    workloads = [json.loads(request["args"][0]) for request in requests]
    return {(w["ti"]["run_id"], w["ti"]["task_id"], w["ti"]["map_index"]) for w in workloads}


def _until(probe, timeout: float):
    """The first truthy answer of ``probe()``, polled for up to ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not (found := probe()):
        assert time.monotonic() < deadline, f"nothing within {timeout:.0f} s"
        time.sleep(0.5)
    return found


# -- what the tests read ---------------------------------------------------------------------


def _assert_exactly_once(stack, api, keys: list[str]) -> None:
    """Ledger, successful task instances and curated rows all say: each file once."""
    from yieldops.curated.dataset import read_table

    entries = _ledger_entries(stack, keys)
    assert sorted(e.source_key for e in entries) == sorted(keys)
    assert {(e.status, e.attempts) for e in entries} == {("curated", 1)}, entries

    outcomes = [_outcome(api, ti) for ti in _successful_ingests(api)]
    assert Counter(o["key"] for o in outcomes) == Counter(keys)

    parts = read_table(stack.curated_dir, "parts").to_pandas()
    assert not parts.duplicated(["lot_id", "wafer_id", "x", "y"]).any()
    rows_per_file = parts.groupby("file", observed=True).size().to_dict()
    assert rows_per_file == {o["sha256"]: o["parts"] for o in outcomes}
    assert set(rows_per_file) == {e.sha256 for e in entries}


def _landed(stack) -> list[str]:
    """The landing key of every file landed so far."""
    from tests.stack.production import LANDING_BUCKET, LANDING_PREFIX

    s3 = stack.aws("s3")
    listing = s3.list_objects_v2(Bucket=LANDING_BUCKET, Prefix=f"{LANDING_PREFIX}/")
    return [item["Key"].removeprefix(f"{LANDING_PREFIX}/") for item in listing["Contents"]]


def _ledger_entries(stack, keys: list[str]) -> list:
    ledger = stack.ledger()
    try:
        return [e for e in ledger.entries() if e.source_key in set(keys)]
    finally:
        ledger.close()


def _get(api: httpx.Client, path: str, **params) -> dict:
    response = api.get(path, params=params)
    response.raise_for_status()
    return response.json()


def _successful_ingests(api: httpx.Client) -> list[dict]:
    """Every mapped ingest task instance that succeeded, in every stdf_ingest run."""
    path = "/dags/stdf_ingest/dagRuns/~/taskInstances"
    return _get(api, path, task_id="ingest", state="success", limit=1000)["task_instances"]


def _outcome(api: httpx.Client, ti: dict) -> dict:
    """What a successful ingest returned: the file's key, content hash and parts."""
    path = f"/dags/stdf_ingest/dagRuns/{ti['dag_run_id']}/taskInstances/ingest/xcomEntries"
    return _get(api, f"{path}/return_value", map_index=ti["map_index"])["value"]


def _running_ingest(api: httpx.Client, workers: list[str], timeout: float) -> dict:
    """The mapped ingest that started last among those running on a worker."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        running = _get(
            api, "/dags/stdf_ingest/dagRuns/~/taskInstances", task_id="ingest", state="running"
        )["task_instances"]
        started = [ti for ti in running if ti["hostname"] in workers and ti["start_date"]]
        if started:
            return max(started, key=lambda ti: ti["start_date"])
        time.sleep(0.3)
    raise TimeoutError(f"no ingest running on a worker within {timeout:.0f} s")


def _wait_finished(api: httpx.Client, run_id: str, timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    while (run := _get(api, f"/dags/stdf_ingest/dagRuns/{run_id}"))["state"] not in (
        "success",
        "failed",
    ):
        assert time.monotonic() < deadline, f"{run_id} still {run['state']} after {timeout} s"
        time.sleep(2)
    return run
