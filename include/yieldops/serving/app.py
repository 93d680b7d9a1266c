"""``create_app(settings)``: the gateway's HTTP API.

- ``POST /v1/predict``: one die (a JSON object) or a batch (a list, or ``{"records": [...]}``).
  A record names its die by ``die_key`` or by ``lot_id``, ``wafer_id``, ``x``, ``y`` and
  carries its features either at top level or under ``features`` (missing ones are
  imputed by the model). Answer: ``{"request_id", "predictions": [{"die_key", "good",
  "probability", "version", "role"}...]}`` in the order of the records.
- ``GET /healthz`` (the process answers), ``GET /readyz`` (200 once the champion is
  loaded), ``GET /metrics`` (Prometheus text), ``GET /v1/routing`` (the table).
- ``PUT /v1/routing`` (fields to change) and ``POST /v1/routing/rollback`` need
  ``Authorization: Bearer <admin token>``: 401 without, 403 when wrong.

Swaps: a routing change loads the versions it needs first (in a thread), writes the
table, then replaces one immutable snapshot (routing + models) in one assignment. A
request reads the snapshot once, so it is answered wholly by the old or the new table.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse, PlainTextResponse
from starlette.concurrency import run_in_threadpool

from . import metrics as metrics_module
from .metrics import Metrics
from .models import LoadedModel, Loader, mlflow_champion, mlflow_loader
from .predlog import PredictionLog, now
from .routing import CHALLENGER, Routing, RoutingError, load_routing, save_routing
from .settings import GatewaySettings

log = logging.getLogger(__name__)
KEY_FIELDS = ("lot_id", "wafer_id", "x", "y")
NOT_FEATURES = {"die_key", "lot_id", "wafer_id", "features"}
MAX_ERROR_CHARS = 1000


class BadRequest(ValueError):
    pass


@dataclass(frozen=True)
class Serving:
    """What answers requests now: replaced as a whole, never changed in place."""

    routing: Routing
    models: Mapping[int, LoadedModel]

    def model_of(self, role: str) -> LoadedModel:
        return self.models[self.routing.version_of(role)]


@dataclass(frozen=True)
class Die:
    key: str
    features: dict[str, Any]


class Gateway:
    """State of one app: the serving snapshot, the loader, the log, the shadow pool."""

    def __init__(self, settings: GatewaySettings, loader: Loader | None) -> None:
        self.settings = settings
        self.loader = loader or mlflow_loader(settings.model_name, settings.mlflow_tracking_uri)
        self._default_loader = loader is None
        self.metrics = Metrics()
        self.current: Serving | None = None
        self.load_error: str | None = None
        self.prediction_log: PredictionLog | None = None
        self._shadow_pool: ThreadPoolExecutor | None = None
        self._shadow_pending = 0
        self._shadow_lock = threading.Lock()
        self._change_lock = asyncio.Lock()
        self._startup: asyncio.Task | None = None
        self._thread_limits: Any = None

    # -- life cycle ----------------------------------------------------------------------

    async def start(self) -> None:
        s = self.settings
        if s.model_threads is not None:
            from threadpoolctl import threadpool_limits

            self._thread_limits = threadpool_limits(limits=s.model_threads, user_api="openmp")
        self.prediction_log = PredictionLog(s.log_url, s.log_batch_rows, s.log_flush_seconds)
        self._shadow_pool = ThreadPoolExecutor(s.shadow_workers, thread_name_prefix="shadow")
        self._startup = asyncio.create_task(self._initial_routing())

    async def stop(self) -> None:
        if self._startup is not None and not self._startup.done():
            self._startup.cancel()
        if self._shadow_pool is not None:
            self._shadow_pool.shutdown(wait=True, cancel_futures=True)
        if self.prediction_log is not None:
            self.prediction_log.close()
        if self._thread_limits is not None:
            self._thread_limits.restore_original_limits()

    async def _initial_routing(self) -> None:
        """The persisted table, else the configured (or MLflow ``champion``) version."""
        try:
            routing = await asyncio.to_thread(load_routing, self.settings.routing_path)
            if routing is None:
                champion = self.settings.initial_champion
                if champion is None and self._default_loader:
                    champion = await asyncio.to_thread(
                        mlflow_champion, self.settings.model_name, self.settings.mlflow_tracking_uri
                    )
                if champion is None:
                    self.load_error = "no champion: set one with PUT /v1/routing"
                    return
                routing = Routing(champion=champion)
            await self.apply(routing)
        except Exception as exc:
            self.load_error = f"{type(exc).__name__}: {exc}"
            log.exception("the gateway could not load its routing")

    # -- routing changes -----------------------------------------------------------------

    async def apply(self, routing: Routing) -> Routing:
        """Load what ``routing`` needs, persist it, then switch to it in one assignment."""
        async with self._change_lock:
            previous = self.current
            loaded = dict(previous.models) if previous else {}
            for version in sorted(routing.versions() - set(loaded)):
                loaded[version] = await asyncio.to_thread(LoadedModel.load, self.loader, version)
            keep = routing.versions()
            if previous is not None:  # the previous champion stays warm for a switch back
                keep.add(previous.routing.champion)
            models = {v: m for v, m in loaded.items() if v in keep}
            await asyncio.to_thread(save_routing, self.settings.routing_path, routing)
            self.current = Serving(routing, models)
            self.load_error = None
            log.info("routing now %s", routing.to_dict())
            return routing

    # -- predictions ---------------------------------------------------------------------

    async def predict(self, dies: Sequence[Die]) -> dict[str, Any]:
        state = self.current
        if state is None:
            raise HTTPException(503, detail=self.load_error or "the champion is not loaded yet")
        request_id = uuid.uuid4().hex
        by_role: dict[str, list[int]] = {}
        for i, die in enumerate(dies):
            by_role.setdefault(state.routing.role_for(die.key), []).append(i)
        answers: list[dict[str, Any] | None] = [None] * len(dies)
        failures: list[str] = []
        for role, indices in by_role.items():
            model = state.model_of(role)
            chosen = [dies[i] for i in indices]
            started = time.perf_counter()
            try:
                proba = await run_in_threadpool(model.predict_good, [d.features for d in chosen])
                error = None
            except Exception as exc:
                proba, error = None, f"{type(exc).__name__}: {exc}"[:MAX_ERROR_CHARS]
                failures.append(f"{role} v{model.version}: {error}")
            seconds = time.perf_counter() - started
            self._record(request_id, model, role, True, chosen, proba, error, seconds)
            if proba is not None:
                for i, p in zip(indices, proba):
                    answers[i] = _answer(dies[i].key, float(p), model.version, role)
        if state.routing.shadowing:
            self._mirror(request_id, state.model_of(CHALLENGER), dies)
        if failures:
            raise HTTPException(500, detail={"request_id": request_id, "errors": failures})
        return {"request_id": request_id, "predictions": answers}

    def _mirror(self, request_id: str, model: LoadedModel, dies: Sequence[Die]) -> None:
        """Score a copy with the challenger in the shadow pool; never awaited, never raises."""
        with self._shadow_lock:
            if self._shadow_pending >= self.settings.shadow_max_pending:
                self.metrics.shadow_dropped()
                return
            self._shadow_pending += 1
        try:
            self._shadow_pool.submit(self._shadow, request_id, model, list(dies))
        except RuntimeError:  # shutting down
            with self._shadow_lock:
                self._shadow_pending -= 1

    def _shadow(self, request_id: str, model: LoadedModel, dies: list[Die]) -> None:
        try:
            started = time.perf_counter()
            try:
                proba, error = model.predict_good([d.features for d in dies]), None
            except Exception as exc:
                proba, error = None, f"{type(exc).__name__}: {exc}"[:MAX_ERROR_CHARS]
            seconds = time.perf_counter() - started
            self._record(request_id, model, CHALLENGER, False, dies, proba, error, seconds)
        except Exception:
            log.exception("shadow scoring failed")
        finally:
            with self._shadow_lock:
                self._shadow_pending -= 1

    def _record(self, request_id, model, role, served, dies, proba, error, seconds) -> None:
        path = "served" if served else "shadow"
        errors = len(dies) if error else 0
        self.metrics.observe(model.version, role, path, len(dies), errors, seconds)
        at, latency_ms = now(), seconds * 1000.0
        rows = []
        for i, die in enumerate(dies):
            p = None if proba is None else float(proba[i])
            rows.append(
                {
                    "request_id": request_id,
                    "time": at,
                    "die_key": die.key,
                    "version": model.version,
                    "role": role,
                    "served": served,
                    "prediction": None if p is None else int(p >= 0.5),
                    "probability": p,
                    "latency_ms": latency_ms,
                    "error": error,
                }
            )
        if self.prediction_log is not None:
            self.prediction_log.add(rows)


def _answer(key: str, probability: float, version: int, role: str) -> dict[str, Any]:
    return {
        "die_key": key,
        "good": probability >= 0.5,
        "probability": probability,
        "version": version,
        "role": role,
    }


# -- request parsing -----------------------------------------------------------------------


def parse_records(body: Any) -> list[Die]:
    if isinstance(body, Mapping) and "records" in body:
        body = body["records"]
    records = body if isinstance(body, list) else [body]
    if not records:
        raise BadRequest("no records")
    return [_die(record, i) for i, record in enumerate(records)]


def die_key(lot_id: Any, wafer_id: Any, x: Any, y: Any) -> str:
    """``lot:wafer:x:y``, the key predictions join labels on."""
    return ":".join(_key_part(v) for v in (lot_id, wafer_id, x, y))


def _key_part(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value)


def _die(record: Any, index: int) -> Die:
    if not isinstance(record, Mapping):
        raise BadRequest(f"record {index} is not a JSON object")
    key = record.get("die_key")
    if key is None:
        missing = [f for f in KEY_FIELDS if record.get(f) is None]
        if missing:
            raise BadRequest(f"record {index} has no die_key and lacks {', '.join(missing)}")
        key = die_key(*(record[f] for f in KEY_FIELDS))
    elif not isinstance(key, str) or not key:
        raise BadRequest(f"record {index}: die_key must be a non-empty string")
    features = {k: v for k, v in record.items() if k not in NOT_FEATURES}
    nested = record.get("features") or {}
    if not isinstance(nested, Mapping):
        raise BadRequest(f"record {index}: features must be an object")
    features.update(nested)
    for name, value in features.items():
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
            raise BadRequest(f"record {index}: feature {name!r} is not a number: {value!r}")
    return Die(str(key), features)


# -- the app -------------------------------------------------------------------------------


def create_app(settings: GatewaySettings, loader: Loader | None = None) -> FastAPI:
    """The gateway. ``loader(version) -> fitted Pipeline``; default: the MLflow registry."""
    gateway = Gateway(settings, loader)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        await gateway.start()
        try:
            yield
        finally:
            await gateway.stop()

    app = FastAPI(title="yieldops prediction gateway", lifespan=lifespan)
    app.state.gateway = gateway

    def require_admin(request: Request) -> None:
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise HTTPException(
                401,
                "admin endpoints need Authorization: Bearer <token>",
                headers={"WWW-Authenticate": "Bearer"},
            )
        expected = settings.admin_token
        if not expected or not hmac.compare_digest(token.strip().encode(), expected.encode()):
            raise HTTPException(403, "wrong admin token")

    @app.post("/v1/predict")
    async def predict(request: Request) -> JSONResponse:
        try:
            dies = parse_records(await request.json())
        except (BadRequest, ValueError) as exc:
            gateway.metrics.request("client_error")
            raise HTTPException(422, str(exc)) from exc
        if len(dies) > settings.max_batch:
            gateway.metrics.request("client_error")
            raise HTTPException(413, f"{len(dies)} records; at most {settings.max_batch}")
        try:
            answer = await gateway.predict(dies)
        except HTTPException as exc:
            gateway.metrics.request("unavailable" if exc.status_code == 503 else "server_error")
            raise
        gateway.metrics.request("ok")
        return JSONResponse(answer)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz() -> JSONResponse:
        state = gateway.current
        if state is None or state.routing.champion not in state.models:
            return JSONResponse(
                {"ready": False, "reason": gateway.load_error or "loading"}, status_code=503
            )
        return JSONResponse({"ready": True, "routing": state.routing.to_dict()})

    @app.get("/metrics")
    async def metrics() -> PlainTextResponse:
        return PlainTextResponse(gateway.metrics.render(), media_type=metrics_module.CONTENT_TYPE)

    @app.get("/v1/routing")
    async def get_routing() -> JSONResponse:
        state = gateway.current
        if state is None:
            raise HTTPException(503, gateway.load_error or "no routing yet")
        return JSONResponse({**state.routing.to_dict(), "loaded": sorted(state.models)})

    @app.put("/v1/routing")
    async def put_routing(request: Request) -> JSONResponse:
        require_admin(request)
        try:
            changes = await request.json()
            if not isinstance(changes, Mapping):
                raise RoutingError("the body must be a JSON object of routing fields")
            state = gateway.current
            routing = state.routing.updated(changes) if state else Routing.from_dict(changes)
        except (RoutingError, ValueError) as exc:
            raise HTTPException(422, str(exc)) from exc
        try:
            routing = await gateway.apply(routing)
        except Exception as exc:  # a version that does not load never takes traffic
            raise HTTPException(409, f"could not load the models: {exc}") from exc
        return JSONResponse(routing.to_dict())

    @app.post("/v1/routing/rollback")
    async def rollback(request: Request) -> JSONResponse:
        require_admin(request)
        state = gateway.current
        if state is None:
            raise HTTPException(409, "nothing to roll back: no routing yet")
        started = time.perf_counter()
        routing = await gateway.apply(state.routing.rolled_back())
        took = (time.perf_counter() - started) * 1000.0
        return JSONResponse({**routing.to_dict(), "took_ms": took})

    return app
