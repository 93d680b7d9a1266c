"""The yieldops Airflow plugin: extra links, the pages it serves inside the API server
(Data Docs, Rollouts) and the Rollouts entry of the UI navigation."""

from __future__ import annotations

from functools import lru_cache

from airflow.plugins_manager import AirflowPlugin

from yieldops_airflow.links import PLUGIN_URL_PREFIX, DataDocsLink, MlflowRunLink, WaferMapsLink

ROLLOUTS_AUDIT_ROWS = 500
LINKS = (MlflowRunLink(), WaferMapsLink())  # a training run's buttons, also on the Rollouts page


def _gateway_routing(target) -> dict:
    """A target's routing now, asked of its gateway through its Airflow connection."""
    from yieldops_airflow.hooks import GatewayHook

    return GatewayHook(target.conn_id, target.name, timeout=3.0).get_conn().routing()


def _training_run_links(target, version: int) -> dict[str, str]:
    """Label -> URL of the training run of a version: its wafer maps, and the run in the
    MLflow UI when MLflow is a tracking server (the buttons of the training task)."""
    from yieldops.names import model_name

    return _run_links(_use_mlflow(), model_name(target.product), version)


@lru_cache(maxsize=256)  # a version's training run never changes: ask MLflow once
def _run_links(tracking_uri: str, model: str, version: int) -> dict[str, str]:
    from mlflow import MlflowClient

    from yieldops_airflow.links import training_run_links

    client = MlflowClient(tracking_uri)
    run_id = client.get_model_version(model, str(version)).run_id
    if not run_id:
        return {}
    experiment = client.get_run(run_id).info.experiment_id
    links = training_run_links(tracking_uri, experiment, run_id)
    return {link.name: links[link.xcom_key] for link in LINKS if link.xcom_key in links}


def _use_mlflow() -> str:
    """Point MLflow at the configured store (read on every request); returns its URI."""
    from yieldops_airflow.hooks import MlflowStoreHook

    return MlflowStoreHook().use()


def _rollouts_overview() -> list[dict]:
    from yieldops.rollout.audit import AuditLog
    from yieldops.rollout.overview import overview
    from yieldops.rollout.targets import load_targets
    from yieldops_airflow.runtime import runtime_settings

    audit = AuditLog(runtime_settings().rollout_db_url)
    try:
        records = audit.rows()[-ROLLOUTS_AUDIT_ROWS:]
    finally:
        audit.close()
    return overview(load_targets(), records, _gateway_routing, _training_run_links)


def _wafer_maps_page(run_id: str) -> str | None:
    """The pictures of an MLflow training run on one page; None when there is no such run."""
    from mlflow.exceptions import MlflowException

    from yieldops.training.plots import pictures_page
    from yieldops.training.registry import run_pictures

    _use_mlflow()
    try:
        pictures = run_pictures(run_id)
    except MlflowException:
        return None
    return pictures_page(f"Training run {run_id}: wafer maps and curves", pictures)


def _readers_of(dag_id: str) -> list:
    """Only callers Airflow lets read `dag_id` (its JWT as bearer or the UI's session cookie):
    Airflow does not authenticate the apps plugins mount, so each route asks for itself."""
    from airflow.api_fastapi.core_api.security import requires_access_dag
    from fastapi import Depends

    return [Depends(requires_access_dag("GET", param_dag_id=dag_id))]


def _yieldops_app():
    """The pages yieldops serves inside the API server, under /yieldops/:

    - ``data-docs/...``: the Great Expectations Data Docs folder (for readers of stdf_ingest);
    - ``rollouts/``: routing, steps, verdict numbers and audit log per target
      (``rollouts/api`` the same as JSON; for readers of model_rollout);
    - ``wafer-maps/<MLflow run id>``: a training run's pictures (for readers of yield_training).

    Settings are read on every request, Airflow Variable overrides included, so the API
    server follows the same configuration as the tasks.
    """
    from fastapi import FastAPI, HTTPException
    from fastapi.concurrency import run_in_threadpool
    from fastapi.responses import FileResponse, HTMLResponse, JSONResponse

    from yieldops_airflow.runtime import runtime_settings

    app = FastAPI(title="yieldops")

    @app.get("/rollouts/api", dependencies=_readers_of("model_rollout"))
    async def rollouts_api() -> JSONResponse:
        return JSONResponse(await run_in_threadpool(_rollouts_overview))

    @app.get("/rollouts/", dependencies=_readers_of("model_rollout"))
    async def rollouts_page() -> HTMLResponse:
        from yieldops.rollout.overview import render_html

        return HTMLResponse(render_html(await run_in_threadpool(_rollouts_overview)))

    @app.get("/wafer-maps/{run_id}", dependencies=_readers_of("yield_training"))
    async def wafer_maps(run_id: str) -> HTMLResponse:
        page = await run_in_threadpool(_wafer_maps_page, run_id)
        if page is None:
            raise HTTPException(status_code=404, detail=f"no MLflow run {run_id!r}")
        return HTMLResponse(page)

    @app.get("/data-docs/{page:path}", dependencies=_readers_of("stdf_ingest"))
    def data_docs(page: str) -> FileResponse:
        root = runtime_settings().docs_dir.resolve()
        path = (root / (page or "index.html")).resolve()
        if path.is_dir():
            path = path / "index.html"
        if root not in path.parents or not path.is_file():
            raise HTTPException(status_code=404, detail=f"no Data Docs page {page!r}")
        return FileResponse(path)

    return app


class YieldopsPlugin(AirflowPlugin):
    name = "yieldops"
    global_operator_extra_links = [DataDocsLink(), *LINKS]
    fastapi_apps = [
        {
            "app": _yieldops_app(),
            "url_prefix": PLUGIN_URL_PREFIX,
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
