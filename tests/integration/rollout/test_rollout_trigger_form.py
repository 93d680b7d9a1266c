"""model_rollout's thresholds checked when a run is triggered: through Airflow's real REST API
(its API app in this process, a JWT of the simple auth manager), as the trigger form or a
script would post them. A refused conf creates no run; no task ever sees it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from tests.conftest import ROOT
from tests.integration.conftest import airflow_jwt

TRIGGER = "/api/v2/dags/model_rollout/dagRuns"


@pytest.fixture(scope="module")
def airflow_api(airflow_db) -> Iterator:
    """Airflow's core API app, called as a logged-in admin, with model_rollout serialized
    from the dags folder as the DAG processor would."""
    from airflow.api_fastapi.app import create_app
    from airflow.dag_processing.bundles.manager import DagBundlesManager
    from airflow.dag_processing.dagbag import BundleDagBag, sync_bag_to_db
    from fastapi.testclient import TestClient

    DagBundlesManager().sync_bundles_to_db()
    dags = ROOT / "dags"
    bag = BundleDagBag(
        dag_folder=dags / "model_rollout.py", bundle_path=dags, bundle_name="dags-folder"
    )
    assert not bag.import_errors
    sync_bag_to_db(bag, "dags-folder", None)
    headers = {"Authorization": f"Bearer {airflow_jwt()}"}
    with TestClient(create_app("core"), headers=headers) as client:
        yield client


@pytest.mark.parametrize(
    "thresholds, named",
    [
        ({"alpha": "0.05"}, "alpha"),  # a string, as a hand-typed form field gives it
        ({"alpha": 2}, "alpha"),  # a significance level above 1
        ({"min_agreement": -0.1}, "min_agreement"),
        ({"max_latency_increse": 0.2}, "max_latency_increse"),  # a misspelt name
    ],
)
def test_bad_thresholds_are_refused_at_trigger_time_naming_the_field(
    airflow_api, thresholds, named
):
    before = _runs(airflow_api)
    conf = {"thresholds": thresholds}
    refused = airflow_api.post(TRIGGER, json={"logical_date": None, "conf": conf})
    assert refused.status_code == 400, refused.text
    detail = refused.json()["detail"]
    assert "Invalid input for param thresholds" in detail and named in detail
    assert _runs(airflow_api) == before


def test_a_valid_threshold_override_is_accepted(airflow_api):
    accepted = airflow_api.post(
        TRIGGER, json={"logical_date": None, "conf": {"thresholds": {"alpha": 0.05}}}
    )
    assert accepted.status_code == 200, accepted.text
    run = accepted.json()
    try:
        assert run["conf"]["thresholds"] == {"alpha": 0.05}
    finally:  # queued, never to run here: gone, so no other test meets it
        path = f"{TRIGGER}/{run['dag_run_id']}"
        assert airflow_api.delete(path).status_code == 204


def _runs(api) -> list[str]:
    listed = api.get(TRIGGER)
    assert listed.status_code == 200, listed.text
    return [run["dag_run_id"] for run in listed.json()["dag_runs"]]
