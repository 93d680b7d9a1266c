"""The demo stack (Airflow standalone, MLflow server, gateway) on free loopback ports,
shared by the end-to-end and browser tests of one session, and the pipeline's first pass
through it."""

from __future__ import annotations

import time

import httpx
import pytest

DAGS = ("stdf_ingest", "yield_training", "model_rollout")


@pytest.fixture(scope="session")
def stack(tmp_path_factory):
    from yieldops.demo.stack import DemoStack

    demo = DemoStack(tmp_path_factory.mktemp("e2e") / "home")
    demo.start()
    try:
        yield demo
    finally:
        demo.stop()


def runs(api: httpx.Client, dag_id: str) -> list[dict]:
    response = api.get(f"/dags/{dag_id}/dagRuns", params={"order_by": "run_after"})
    response.raise_for_status()
    return response.json()["dag_runs"]


def first_success(api: httpx.Client, dag_id: str) -> dict | None:
    return next((r for r in runs(api, dag_id) if r["state"] == "success"), None)


@pytest.fixture(scope="session")
def landed(stack):
    """Three baseline lots landed; returns the REST client once a rollout has succeeded."""
    from yieldops.demo.story import land_lots

    land_lots(stack, lots=3, wafers_per_lot=2, seed=0, drift=0.3)
    api = stack.airflow()
    deadline = time.monotonic() + 900
    while first_success(api, "model_rollout") is None:
        failed = [r["dag_run_id"] for d in DAGS for r in runs(api, d) if r["state"] == "failed"]
        assert not failed, f"runs failed: {failed}; logs under {stack.home / 'logs'}"
        assert time.monotonic() < deadline, "no successful model_rollout within 15 minutes"
        time.sleep(5)
    return api
