"""The yieldops Airflow plugin: extra links, the pages it serves inside the API server
(Data Docs, Rollouts) and the Rollouts entry of the UI navigation."""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from yieldops_airflow.links import (
    DATA_DOCS_URL_PREFIX,
    DataDocsLink,
    MlflowRunLink,
    WaferMapsLink,
)

ROLLOUTS_AUDIT_ROWS = 500


def _gateway_routing(target) -> dict:
    """A target's routing now, asked of its gateway through its Airflow connection."""
    from airflow.models.connection import Connection

    from yieldops.rollout.gateway import GatewayClient
    from yieldops_airflow.runtime import base_url

    conn = Connection.get_connection_from_secrets(target.conn_id)
    return GatewayClient(base_url(conn), conn.password or "", timeout=3.0).routing()


def _rollouts_overview() -> list[dict]:
    from yieldops.rollout.audit import AuditLog
    from yieldops.rollout.overview import overview
    from yieldops.rollout.targets import load_targets
    from yieldops.settings import load_settings

    audit = AuditLog(load_settings().rollout_db_url)
    try:
        records = audit.rows()[-ROLLOUTS_AUDIT_ROWS:]
    finally:
        audit.close()
    return overview(load_targets(), records, _gateway_routing)


def _yieldops_app():
    """The pages yieldops serves inside the API server, under /yieldops/:

    - ``data-docs/...``: the Great Expectations Data Docs folder;
    - ``rollouts/``: routing, steps, verdict numbers and audit log per target
      (``rollouts/api`` the same as JSON).

    Settings are read on every request, so the API server follows the same
    YIELDOPS_* configuration as the tasks.
    """
    from fastapi import FastAPI, HTTPException
    from fastapi.concurrency import run_in_threadpool
    from fastapi.responses import FileResponse, HTMLResponse, JSONResponse

    from yieldops.settings import load_settings

    app = FastAPI(title="yieldops")

    @app.get("/rollouts/api")
    async def rollouts_api() -> JSONResponse:
        return JSONResponse(await run_in_threadpool(_rollouts_overview))

    @app.get("/rollouts/")
    async def rollouts_page() -> HTMLResponse:
        from yieldops.rollout.overview import render_html

        return HTMLResponse(render_html(await run_in_threadpool(_rollouts_overview)))

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
    global_operator_extra_links = [DataDocsLink(), MlflowRunLink(), WaferMapsLink()]
    fastapi_apps = [
        {
            "app": _yieldops_app(),
            "url_prefix": DATA_DOCS_URL_PREFIX.rsplit("/", 1)[0],
            "name": "yieldops",
        }
    ]
    # A "Rollouts" entry in the UI's navigation, showing the page inside the UI.
    external_views = [
        {
            "name": "Rollouts",
            "href": "yieldops/rollouts/",
            "url_route": "rollouts",
            "destination": "nav",
            "category": "browse",
        }
    ]
