"""The task buttons as the Airflow UI gets them: Airflow's real API app (plugins mounted, the
JWT the simple auth manager issues) answering the extra-links endpoint in this process, for
task instances that dag.test() left in the metadata database. The links are registered for
every DAG of the deployment, so another team's DAG is asked too."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from tests.integration.conftest import airflow_jwt, load_dag

from yieldops.synth import synthesize

BUTTONS = ("Data Docs", "MLflow run", "Wafer maps")
ANOTHER_TEAMS_DAG = '''
"""Another team's DAG, in its own bundle: nothing of yieldops."""
from airflow.sdk import dag, task


@dag(schedule=None, doc_md=__doc__)
def another_team_report():
    @task
    def summarise() -> int:
        return 42

    summarise()


another_team_report()
'''


@pytest.fixture
def airflow_api(airflow_db) -> Iterator:
    """Airflow's API server app (core API and plugin apps), called as a logged-in admin."""
    from airflow.api_fastapi.app import create_app
    from fastapi.testclient import TestClient

    headers = {"Authorization": f"Bearer {airflow_jwt()}"}
    with TestClient(create_app("core"), headers=headers) as client:
        yield client


def _links(api, run, task_id: str, map_index: int = -1) -> dict[str, str | None]:
    path = f"/api/v2/dags/{run.dag_id}/dagRuns/{run.run_id}/taskInstances/{task_id}/links"
    response = api.get(path, params={"map_index": map_index})
    assert response.status_code == 200, response.text
    return response.json()["extra_links"]


def test_a_task_of_another_teams_dag_has_no_button_and_no_error(airflow_api, tmp_path, monkeypatch):
    from airflow.dag_processing.dagbag import DagBag

    (tmp_path / "report.py").write_text(ANOTHER_TEAMS_DAG)
    local = "airflow.dag_processing.bundles.local.LocalDagBundle"
    bundles = [
        {"name": "dags-folder", "classpath": local, "kwargs": {}},
        {"name": "another-team", "classpath": local, "kwargs": {"path": str(tmp_path)}},
    ]
    monkeypatch.setenv("AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST", json.dumps(bundles))
    run = DagBag(dag_folder=tmp_path).dags["another_team_report"].test()
    assert run.state == "success"

    assert _links(airflow_api, run, "summarise") == dict.fromkeys(BUTTONS)


def test_an_ingest_task_has_the_data_docs_button_of_its_file(airflow_api, tmp_path, monkeypatch):
    """A lot whose process drifted far out (yield 1 %) is quarantined: its Data Docs say why.
    (Nothing is curated, so no other test sees an asset event of this run.)"""
    home = tmp_path / "home"
    monkeypatch.setenv("YIELDOPS_HOME", str(home))
    monkeypatch.setenv("YIELDOPS_INGEST_TRIGGER", "sweep")
    landing = home / "landing" / "tester-a"
    (landed,) = synthesize(landing, lots=1, wafers_per_lot=1, seed=5, drift=2.0, first_lot=3)
    run = load_dag("stdf_ingest").test()
    assert run.state == "failed"

    links = _links(airflow_api, run, "ingest", map_index=0)
    assert (links["MLflow run"], links["Wafer maps"]) == (None, None)
    page = airflow_api.get(links["Data Docs"])
    assert page.status_code == 200
    assert f"Validation of tester-a/{landed.name} (lot S5-L004): " in page.text
    assert "FAILED" in page.text
