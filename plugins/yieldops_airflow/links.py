"""Extra links on task instances: buttons in the Airflow UI."""

from __future__ import annotations

from airflow.sdk import BaseOperatorLink

DATA_DOCS_URL_PREFIX = "/yieldops/data-docs"


class DataDocsLink(BaseOperatorLink):
    """The Great Expectations Data Docs page of the file a task validated.

    The task stores the link under ``xcom_key``; the page is served by the
    yieldops plugin's FastAPI app (see ``yieldops_plugin``).
    """

    name = "Data Docs"

    def get_link(self, operator, *, ti_key) -> str:
        from airflow.sdk.execution_time.xcom import XCom

        return XCom.get_value(ti_key=ti_key, key=self.xcom_key) or ""


def data_docs_url(page: str, docs_dir: str) -> str:
    """URL of a Data Docs page (a file under ``docs_dir``) as the plugin serves it."""
    from pathlib import Path

    relative = Path(page).resolve().relative_to(Path(docs_dir).resolve())
    return f"{DATA_DOCS_URL_PREFIX}/{relative.as_posix()}"
