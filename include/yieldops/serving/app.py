"""``create_app(settings)``: the gateway's HTTP API.

- ``POST /v1/predict``: one die (a JSON object) or a batch (a list, or ``{"records": [...]}``).
  A record names its die by ``die_key`` or by ``lot_id``, ``wafer_id``, ``x``, ``y`` and
  carries its features either at top level or under ``features`` (missing ones are
  imputed by the model). Answer: ``{"request_id", "predictions": [{"die_key", "good",
  "probability", "version", "role"}...]}`` in the order of the records.
- ``POST /invocations``: MLflow's scoring endpoint, for ``mlflow models serve`` clients:
  ``{"dataframe_split": ...}``, ``{"dataframe_records": [...]}``, ``{"inputs": ...}`` or
  ``{"instances": ...}``. Answered as MLflow's server answers for our models, whose pyfunc
  predicts ``predict_proba``: ``{"predictions": [[P(bad), P(good)]...]}`` in row order
  (header ``X-Request-Id``: the rows' request id in the prediction log). A row names its die
  by its key fields as above when it has them all, else by a key generated from its content
  (:mod:`.records`). Same routing, log, mirroring and limits as ``/v1/predict``.
- ``GET /healthz`` (the process answers), ``GET /readyz`` (200 once the champion is
  loaded, with the table and the ``pid`` of the worker that answered), ``GET /metrics``
  (Prometheus text, of the worker that answered), ``GET /v1/routing`` (the table, the
  loaded versions and the form each serves from: ``onnx`` or ``sklearn``).
- ``PUT /v1/routing`` (fields to change) and ``POST /v1/routing/rollback`` need
  ``Authorization: Bearer <admin token>``: 401 without, 403 when wrong, and 403 saying so
  when the gateway has no admin token (it warns about that at start).

Hostile or broken requests never cost other callers: a body over ``max_body_bytes`` is
refused (413) by its Content-Length before it is read, or as soon as a chunked body passes
the limit; more than ``max_batch`` records is refused (413) before any record is parsed; a
body over ``PARSE_ON_LOOP_BYTES`` is parsed in a worker thread, so the event loop (and
``/healthz``) keeps answering. A record that breaks a rule of :mod:`.records` is a 422
naming the record and the field, never echoing the input. Every response to a prediction
request is counted by outcome (``ok``, ``client_error``, ``unavailable``,
``server_error``); any unhandled error, on any endpoint, is a short JSON 500 counted as
``server_error``, and the caller's keep-alive connection stays open.

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
With several workers (``workers``), each is a whole gateway that serves the table another
worker wrote once it reads it from the file (:mod:`.follow`).
"""

from __future__ import annotations

import asyncio
import functools
import hmac
import json
import logging
import os
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
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from . import metrics as metrics_module
from .batching import Batcher
from .follow import RoutingFollower
from .metrics import Metrics, outcome_of
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
from .records import BadRequest, Die, TooLarge, parse_body
from .routing import (
    CHAMPION,
    Routing,
    RoutingError,
    counterpart,
    load_routing,
    save_routing,
)
from .settings import ENVIRONMENT, GatewaySettings

log = logging.getLogger(__name__)
# Bodies longer than this are parsed in a worker thread. Parsing and checking take about
# 60 ms per MB on this project's 2-core machine (a 4 MiB body: 0.25 s of a frozen event
# loop); up to 64 KiB (a die, a batch of a few dozen) a few milliseconds, kept on the loop.
PARSE_ON_LOOP_BYTES = 64 * 1024
# Requests counted by every outcome; any other only when the gateway fails it (a 5xx but 503:
# /readyz answers 503 by design while loading).
PREDICTION_PATHS = frozenset({"/v1/predict", "/invocations"})
ADMIN_TOKEN_VARIABLE = ENVIRONMENT["admin_token"][0]
MAX_DETAIL_CHARS = 500  # of a refusal's message: bounded, whatever the body held
CLIENT_CLOSED = 499  # the status a request whose caller left counts as (nginx's)


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
        self._following: asyncio.Task | None = None
        self._model_threads = OpenMPThreads(settings.model_threads)
        self.batcher = Batcher(self._call, settings.batch_max_dies, settings.batch_wait_seconds)

    # -- life cycle ----------------------------------------------------------------------

    async def start(self) -> None:
        s = self.settings
        if not s.admin_token:
            log.warning(
                "no admin token is set (%s): routing changes and rollbacks are refused",
                ADMIN_TOKEN_VARIABLE,
            )
        self.prediction_log = PredictionLog(
            s.log_url,
            s.log_batch_rows,
            s.log_flush_seconds,
            on_lost=lambda rows: self.metrics.prediction_log_lost("gateway", rows),
        )
        self._startup = asyncio.create_task(self._initial_routing())
        if s.workers > 1:  # the other workers change the table too (see follow)
            follower = RoutingFollower(
                s.routing_path,
                lambda: None if self.current is None else self.current.routing,
                functools.partial(self.apply, persist=False),
            )
            self._following = asyncio.create_task(follower.run())

    async def stop(self) -> None:
        for task in (self._startup, self._following):
            if task is not None and not task.done():
                task.cancel()
        await self.mirror.stop()
        if self.prediction_log is not None:
            self.prediction_log.close()

    async def _initial_routing(self) -> None:
        """The persisted table, else the configured (or MLflow ``champion``) version."""
        try:
            persisted = await asyncio.to_thread(load_routing, self.settings.routing_path)
            routing = persisted
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
            # Not the persisted table written back: another worker may have changed it since.
            await self.apply(routing, persist=persisted is None)
        except Exception as exc:
            self.load_error = f"{type(exc).__name__}: {exc}"
            log.exception("the gateway could not load its routing")

    # -- routing changes -----------------------------------------------------------------

    async def apply(self, routing: Routing, persist: bool = True) -> Routing:
        """Load what ``routing`` needs (and start the mirror workers when it mirrors),
        persist it (``persist=False``: it was read from the file), then switch to it in one
        assignment."""
        async with self._change_lock:
            previous = self.current
            if not persist and previous is not None and previous.routing == routing:
                return routing  # e.g. this worker's own change, read back by its follower
            loaded = dict(previous.models) if previous else {}
            for version in sorted(routing.versions() - set(loaded)):
                loaded[version] = await asyncio.to_thread(
                    LoadedModel.load, self.loader, version, self.settings.model_threads
                )
            keep = routing.versions()
            if previous is not None:  # the previous champion stays warm for a switch back
                keep.add(previous.routing.champion)
            models = {v: m for v, m in loaded.items() if v in keep}
            if routing.mirrors:
                await self.mirror.start()
            if persist:
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
        scored = await self._score(request_id, model, role, dies)
        if scored.error is None or role == CHAMPION:
            return role, scored
        self.metrics.fallback(model.version, len(dies))
        champion = state.model_of(CHAMPION)
        return CHAMPION, await self._score(request_id, champion, CHAMPION, dies)

    async def _score(
        self, request_id: str, model: LoadedModel, role: str, dies: list[Die]
    ) -> Scored:
        """Score ``dies`` for the caller, with the dies of other requests waiting on the same
        version (:mod:`.batching`); log them (served rows) and count them."""
        scored = await self.batcher.score(model, [d.features for d in dies])
        errors = len(dies) if scored.error else 0
        self.metrics.observe(model.version, role, "served", len(dies), errors, scored.seconds)
        keys = [d.key for d in dies]
        if self.prediction_log is None:
            raise RuntimeError("the prediction log is not open: start() the gateway first")
        self.prediction_log.add(
            prediction_rows(request_id, model.version, role, True, keys, scored)
        )
        return scored

    def _call(self, model: LoadedModel, features: Sequence[Mapping[str, Any]]) -> Scored:
        """One model call, in the batcher's thread."""
        self._model_threads.apply()
        return score(model, features)


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


# -- requests ------------------------------------------------------------------------------


async def read_body(request: Request, limit: int) -> bytes:
    """The body, refused (413) as soon as it is known to pass ``limit`` bytes: by its
    Content-Length before any of it is read, else while it streams in."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise TooLarge(f"the body is over the limit of {limit} bytes")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise TooLarge(f"the body is over the limit of {limit} bytes")
    return bytes(body)


class CountedOutcomes:
    """Counts every prediction request by the outcome of its status, and turns an unhandled
    error of any request into a short JSON 500 counted as ``server_error``. Starlette's own
    last handler re-raises the error to the server, and uvicorn then closes the caller's
    keep-alive connection; this one answers in its place and keeps the connection."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status: int | None = None

        async def noting_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, noting_status)
        except ClientDisconnect:  # gone while sending its body: no one to answer
            status = CLIENT_CLOSED
        except Exception:
            if status is not None:  # the answer is under way: nothing left to mend
                raise
            log.exception("unhandled error answering %s %s", scope["method"], scope["path"])
            status = 500
            error = JSONResponse({"detail": "internal server error"}, status_code=500)
            await error(scope, receive, send)
        finally:
            self._count(scope["path"], status)

    def _count(self, path: str, status: int | None) -> None:
        outcome = outcome_of(500 if status is None else status)
        if path in PREDICTION_PATHS or outcome == "server_error":
            self.metrics.request(outcome)


def _mlflow_answer(answer: dict[str, Any]) -> list[list[float]]:
    """MLflow's ``predictions`` for our pyfunc (``predict_proba`` of a classifier of labels
    0 and 1): per row, P(bad) and P(good)."""
    return [[1.0 - p["probability"], p["probability"]] for p in answer["predictions"]]


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
    app.add_middleware(CountedOutcomes, metrics=gateway.metrics)

    @app.exception_handler(BadRequest)
    async def refused(request: Request, exc: BadRequest) -> JSONResponse:
        return JSONResponse({"detail": str(exc)[:MAX_DETAIL_CHARS]}, status_code=exc.status)

    def require_admin(request: Request) -> None:
        expected = settings.admin_token
        if not expected:
            raise HTTPException(
                403,
                f"the gateway has no admin token configured (set {ADMIN_TOKEN_VARIABLE}): "
                "admin endpoints refuse everyone",
            )
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise HTTPException(
                401,
                "admin endpoints need Authorization: Bearer <token>",
                headers={"WWW-Authenticate": "Bearer"},
            )
        if not hmac.compare_digest(token.strip().encode(), expected.encode()):
            raise HTTPException(403, "wrong admin token")

    async def predicted(request: Request) -> tuple[dict[str, Any], BackgroundTask | None]:
        """The answer to a prediction request, and the hand-over of its mirrored copy, run
        once the answer is sent: the caller never waits on it."""
        body = await read_body(request, settings.max_body_bytes)
        if len(body) > PARSE_ON_LOOP_BYTES:
            dies = await run_in_threadpool(parse_body, body, settings.max_batch)
        else:
            dies = parse_body(body, settings.max_batch)
        answer, copy = await gateway.predict(dies, body)
        return answer, None if copy is None else BackgroundTask(gateway.mirror.submit, copy)

    @app.post("/v1/predict")
    async def predict(request: Request) -> JSONResponse:
        answer, handover = await predicted(request)
        return JSONResponse(answer, background=handover)

    @app.post("/invocations")
    async def invocations(request: Request) -> JSONResponse:
        answer, handover = await predicted(request)
        return JSONResponse(
            {"predictions": _mlflow_answer(answer)},
            headers={"X-Request-Id": answer["request_id"]},
            background=handover,
        )

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz() -> JSONResponse:
        """Ready or not, and which worker process says so (``pid``; ``workers > 1``)."""
        state = gateway.current
        if state is None or state.routing.champion not in state.models:
            return JSONResponse(
                {"ready": False, "reason": gateway.load_error or "loading", "pid": os.getpid()},
                status_code=503,
            )
        return JSONResponse({"ready": True, "routing": state.routing.to_dict(), "pid": os.getpid()})

    @app.get("/metrics")
    async def metrics() -> PlainTextResponse:
        return PlainTextResponse(gateway.metrics.render(), media_type=metrics_module.CONTENT_TYPE)

    @app.get("/v1/routing")
    async def get_routing() -> JSONResponse:
        state = gateway.current
        if state is None:
            raise HTTPException(503, gateway.load_error or "no routing yet")
        forms = {str(v): state.models[v].form for v in sorted(state.models)}
        return JSONResponse(
            {**state.routing.to_dict(), "loaded": sorted(state.models), "forms": forms}
        )

    @app.put("/v1/routing")
    async def put_routing(request: Request) -> JSONResponse:
        require_admin(request)
        body = await read_body(request, settings.max_body_bytes)
        try:
            changes = json.loads(body)
            if not isinstance(changes, Mapping):
                raise RoutingError("the body must be a JSON object of routing fields")
            state = gateway.current
            routing = state.routing.updated(changes) if state else Routing.from_dict(changes)
        except (RoutingError, ValueError, RecursionError) as exc:
            raise HTTPException(422, str(exc)[:MAX_DETAIL_CHARS]) from None
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
