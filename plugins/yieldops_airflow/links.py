"""Extra links on task instances: buttons in the Airflow UI."""

from __future__ import annotations

from airflow.sdk import BaseOperatorLink

DATA_DOCS_URL_PREFIX = "/yieldops/data-docs"


class XComLink(BaseOperatorLink):
    """A button whose URL the task stored under ``xcom_key`` (no URL: no button)."""

    def get_link(self, operator, *, ti_key) -> str:
        from airflow.sdk.execution_time.xcom import XCom

        return XCom.get_value(ti_key=ti_key, key=self.xcom_key) or ""


class DataDocsLink(XComLink):
    """The Great Expectations Data Docs page of the file a task validated, served by the
    yieldops plugin's FastAPI app (see ``yieldops_plugin``)."""

    name = "Data Docs"


class MlflowRunLink(XComLink):
    """The MLflow run a training task logged (when MLflow is a tracking server)."""

    name = "MLflow run"


class WaferMapsLink(XComLink):
    """The run's pictures in the MLflow UI: wafer maps, ROC curve, confusion matrix."""

    name = "Wafer maps"


def mlflow_run_urls(tracking_uri: str, experiment_id: str, run_id: str) -> dict[str, str]:
    """UI addresses of a run and of its pictures; none for a local store (no UI to open)."""
    if not tracking_uri.startswith(("http://", "https://")):
        return {}
    run = f"{tracking_uri.rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id}"
    return {MlflowRunLink().xcom_key: run, WaferMapsLink().xcom_key: f"{run}/artifacts"}


def data_docs_url(page: str, docs_dir: str) -> str:
    """URL of a Data Docs page (a file under ``docs_dir``) as the plugin serves it."""
    from pathlib import Path

    relative = Path(page).resolve().relative_to(Path(docs_dir).resolve())
    return f"{DATA_DOCS_URL_PREFIX}/{relative.as_posix()}"
