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

Mirroring: in modes shadow, canary and bluegreen every die is scored by both versions,
so the rollout analysis compares them on the same dies. The version the routing picks
answers (a served row in the prediction log); the other scores a copy in a worker process
(:mod:`.mirror`; an unserved row, same request id and die key). The copy is handed over
once the answer is sent, never awaited and never raising; past a bounded backlog
(``mirror_max_pending``) it is dropped, its dies are counted by reason and the gateway logs
when dropping starts and ends.

Fallback: a challenger that fails on the dies it should answer never fails the caller. Its
error rows are logged and the champion answers those dies instead (counted, not mirrored
back to the challenger). Only a champion failure answers 500.

Swaps: a routing change loads the versions it needs first (in a thread), writes the
table, then replaces one immutable snapshot (routing + models) in one assignment. A
request reads the snapshot once, so it is answered wholly by the old or the new table.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import time
import uuid
from collections.abc import Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse, PlainTextResponse
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool

from . import metrics as metrics_module
from .metrics import Metrics
from .mirror import Copy, Mirror, MirrorPool
from .models import (
    LoadedModel,
    Loader,
    MlflowLoader,
    OpenMPThreads,
    Scored,
    mlflow_champion,
    score,
)
from .predlog import PredictionLog, prediction_rows
from .records import BadRequest, Die, parse_records
from .routing import (
    CHAMPION,
    Routing,
    RoutingError,
    counterpart,
    load_routing,
    save_routing,
)
from .settings import GatewaySettings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Serving:
    """What answers requests now: replaced as a whole, never changed in place."""

    routing: Routing
    models: Mapping[int, LoadedModel]

    def model_of(self, role: str) -> LoadedModel:
        return self.models[self.routing.version_of(role)]


class Gateway:
    """State of one app: the serving snapshot, the loader, the log, the mirror workers."""

    def __init__(self, settings: GatewaySettings, loader: Loader | None) -> None:
        self.settings = settings
        self.loader = loader or MlflowLoader(settings.model_name, settings.mlflow_tracking_uri)
        self._default_loader = loader is None
        self.metrics = Metrics()
        self.mirror = MirrorPool(settings, self.loader, self.metrics)
        self.current: Serving | None = None
        self.load_error: str | None = None
        self.prediction_log: PredictionLog | None = None
        self._change_lock = asyncio.Lock()
        self._startup: asyncio.Task | None = None
        self._model_threads = OpenMPThreads(settings.model_threads)

    # -- life cycle ----------------------------------------------------------------------

    async def start(self) -> None:
        s = self.settings
        self.prediction_log = PredictionLog(
            s.log_url,
            s.log_batch_rows,
            s.log_flush_seconds,
            on_lost=lambda rows: self.metrics.prediction_log_lost("gateway", rows),
        )
        self._startup = asyncio.create_task(self._initial_routing())

    async def stop(self) -> None:
        if self._startup is not None and not self._startup.done():
            self._startup.cancel()
        await self.mirror.stop()
        if self.prediction_log is not None:
            self.prediction_log.close()

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
        """Load what ``routing`` needs (and start the mirror workers when it mirrors),
        persist it, then switch to it in one assignment."""
        async with self._change_lock:
            previous = self.current
            loaded = dict(previous.models) if previous else {}
            for version in sorted(routing.versions() - set(loaded)):
                loaded[version] = await asyncio.to_thread(LoadedModel.load, self.loader, version)
            keep = routing.versions()
            if previous is not None:  # the previous champion stays warm for a switch back
                keep.add(previous.routing.champion)
            models = {v: m for v, m in loaded.items() if v in keep}
            if routing.mirrors:
                await self.mirror.start()
            await asyncio.to_thread(save_routing, self.settings.routing_path, routing)
            self.current = Serving(routing, models)
            self.metrics.routing(routing)
            self.load_error = None
            log.info("routing now %s", routing.to_dict())
            return routing

    # -- predictions ---------------------------------------------------------------------

    async def predict(self, dies: Sequence[Die], body: bytes) -> tuple[dict[str, Any], Copy | None]:
        """The answer to ``dies`` (parsed from ``body``) and the copy to mirror, if any."""
        state = self.current
        if state is None:
            raise HTTPException(503, detail=self.load_error or "the champion is not loaded yet")
        request_id = uuid.uuid4().hex
        answers: list[dict[str, Any] | None] = [None] * len(dies)
        failures: list[str] = []
        mirrors: list[Mirror] = []
        for role, indices in _indices_by_role(state.routing, dies).items():
            chosen = [dies[i] for i in indices]
            answered_by, scored = await self._serve(request_id, state, role, chosen)
            version = state.routing.version_of(answered_by)
            if scored.proba is not None:  # None: the call failed, with scored.error
                for i, p in zip(indices, scored.proba.tolist()):
                    answers[i] = _answer(dies[i].key, p, version, answered_by)
            else:
                failures.append(f"{answered_by} v{version}: {scored.error}")
            # Not back to a challenger that just failed on these dies: the champion has them.
            if state.routing.mirrors and answered_by == role:
                mirrors.append(_mirror(state.routing, counterpart(role), indices))
        copy = None
        if mirrors:
            copy = Copy(request_id, body, tuple(mirrors), frozenset(state.routing.versions()))
        if failures:
            if copy is not None:  # no answer to send first
                await self.mirror.submit(copy)
            raise HTTPException(500, detail={"request_id": request_id, "errors": failures})
        return {"request_id": request_id, "predictions": answers}, copy

    async def _serve(
        self, request_id: str, state: Serving, role: str, dies: list[Die]
    ) -> tuple[str, Scored]:
        """Score ``dies`` with ``role``'s version, or with the champion when the challenger
        fails; returns who answered and what."""
        model = state.model_of(role)
        scored = await run_in_threadpool(self._score, request_id, model, role, dies)
        if scored.error is None or role == CHAMPION:
            return role, scored
        self.metrics.fallback(model.version, len(dies))
        champion = state.model_of(CHAMPION)
        return CHAMPION, await run_in_threadpool(self._score, request_id, champion, CHAMPION, dies)

    def _score(self, request_id: str, model: LoadedModel, role: str, dies: list[Die]) -> Scored:
        """Score ``dies`` for the caller; log them (served rows) and count them."""
        self._model_threads.apply()
        scored = score(model, [d.features for d in dies])
        errors = len(dies) if scored.error else 0
        self.metrics.observe(model.version, role, "served", len(dies), errors, scored.seconds)
        keys = [d.key for d in dies]
        if self.prediction_log is None:
            raise RuntimeError("the prediction log is not open: start() the gateway first")
        self.prediction_log.add(
            prediction_rows(request_id, model.version, role, True, keys, scored)
        )
        return scored


def _indices_by_role(routing: Routing, dies: Sequence[Die]) -> dict[str, list[int]]:
    """Positions of the dies each role answers."""
    by_role: dict[str, list[int]] = {}
    for i, die in enumerate(dies):
        by_role.setdefault(routing.role_for(die.key), []).append(i)
    return by_role


def _mirror(routing: Routing, role: str, indices: list[int]) -> Mirror:
    return Mirror(role, routing.version_of(role), tuple(indices))


def _answer(key: str, probability: float, version: int, role: str) -> dict[str, Any]:
    return {
        "die_key": key,
        "good": probability > 0.5,  # as Pipeline.predict and the evaluation decide
        "probability": probability,
        "version": version,
        "role": role,
    }


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
        body = await request.body()
        try:
            dies = parse_records(json.loads(body))
        except (BadRequest, ValueError) as exc:
            gateway.metrics.request("client_error")
            raise HTTPException(422, str(exc)) from exc
        if len(dies) > settings.max_batch:
            gateway.metrics.request("client_error")
            raise HTTPException(413, f"{len(dies)} records; at most {settings.max_batch}")
        try:
            answer, copy = await gateway.predict(dies, body)
        except HTTPException as exc:
            gateway.metrics.request("unavailable" if exc.status_code == 503 else "server_error")
            raise
        gateway.metrics.request("ok")
        # Handed to the mirror workers once the answer is sent: the caller never waits on it.
        handover = None if copy is None else BackgroundTask(gateway.mirror.submit, copy)
        return JSONResponse(answer, background=handover)

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
