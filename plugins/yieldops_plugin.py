"""The yieldops Airflow plugin: extra links, and the pages it serves inside the API server."""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from yieldops_airflow.links import DATA_DOCS_URL_PREFIX, DataDocsLink


def _data_docs_app():
    """Serves the Great Expectations Data Docs folder at /yieldops/data-docs/.

    The folder is read from the settings on every request, so the API server
    follows the same YIELDOPS_* configuration as the tasks that write it.
    """
    from fastapi import FastAPI, HTTPException
    from fastapi.responses import FileResponse

    from yieldops.settings import load_settings

    app = FastAPI(title="yieldops")

    @app.get("/data-docs/{page:path}")
    def data_docs(page: str) -> FileResponse:
        root = load_settings().docs_dir.resolve()
        path = (root / (page or "index.html")).resolve()
        if path.is_dir():
            path = path / "index.html"
        if root not in path.parents or not path.is_file():
            raise HTTPException(status_code=404, detail=f"no Data Docs page {page!r}")
        return FileResponse(path)

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
