"""The yieldops Airflow plugin: extra links, and the pages it serves inside the API server."""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from yieldops_airflow.links import DATA_DOCS_URL_PREFIX, DataDocsLink


def _data_docs_app():
    """Serves the Great Expectations Data Docs folder at /yieldops/data-docs/."""
    from fastapi import FastAPI
    from fastapi.staticfiles import StaticFiles

    from yieldops.settings import load_settings

    docs_dir = load_settings().docs_dir
    docs_dir.mkdir(parents=True, exist_ok=True)
    app = FastAPI(title="yieldops")
    app.mount("/data-docs", StaticFiles(directory=docs_dir, html=True), name="data-docs")
    return app


class YieldopsPlugin(AirflowPlugin):
    name = "yieldops"
    global_operator_extra_links = [DataDocsLink()]
    fastapi_apps = [
        {
            "app": _data_docs_app(),
            "url_prefix": DATA_DOCS_URL_PREFIX.rsplit("/", 1)[0],
            "name": "yieldops",
        }
    ]
