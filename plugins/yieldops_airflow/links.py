"""Extra links on task instances: buttons in the Airflow UI."""

from __future__ import annotations

from airflow.sdk import BaseOperatorLink

PLUGIN_URL_PREFIX = "/yieldops"
DATA_DOCS_URL_PREFIX = f"{PLUGIN_URL_PREFIX}/data-docs"
WAFER_MAPS_URL_PREFIX = f"{PLUGIN_URL_PREFIX}/wafer-maps"


class XComLink(BaseOperatorLink):
    """A button whose URL the task stored under ``xcom_key`` (no URL: no button).

    The plugin registers these links globally, so the API server asks them for every task
    of every DAG, ours or not. It evaluates them outside any task process, where the Task
    SDK's XCom cannot run: read the XCom table as Airflow's own links do there.
    """

    def get_link(self, operator, *, ti_key) -> str:
        from airflow.serialization.definitions.operatorlink import XComOperatorLink

        stored = XComOperatorLink(name=self.name, xcom_key=self.xcom_key)
        return stored.get_link(operator, ti_key=ti_key)


class DataDocsLink(XComLink):
    """The Great Expectations Data Docs page of the file a task validated, served by the
    yieldops plugin's FastAPI app (see ``yieldops_plugin``)."""

    name = "Data Docs"


class MlflowRunLink(XComLink):
    """The MLflow run a training task logged (when MLflow is a tracking server)."""

    name = "MLflow run"


class WaferMapsLink(XComLink):
    """The pictures a training run logged (wafer maps, ROC curve, confusion matrix) on one
    page the yieldops plugin serves from MLflow, whatever its store."""

    name = "Wafer maps"


def training_run_links(tracking_uri: str, experiment_id: str, run_id: str) -> dict[str, str]:
    """The buttons of a task that logged an MLflow run: its pictures, and the run in the
    MLflow UI when there is one (a tracking server, not a local store)."""
    links = {WaferMapsLink().xcom_key: f"{WAFER_MAPS_URL_PREFIX}/{run_id}"}
    if tracking_uri.startswith(("http://", "https://")):
        run = f"{tracking_uri.rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id}"
        links[MlflowRunLink().xcom_key] = run
    return links


def data_docs_url(page: str, docs_dir: str) -> str:
    """URL of a Data Docs page (a file under ``docs_dir``) as the plugin serves it."""
    from pathlib import Path

    relative = Path(page).resolve().relative_to(Path(docs_dir).resolve())
    return f"{DATA_DOCS_URL_PREFIX}/{relative.as_posix()}"
