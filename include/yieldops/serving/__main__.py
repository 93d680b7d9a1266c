"""``python -m yieldops.serving``: the gateway on uvicorn, configured from the environment
(the variables are those of ``yieldops.serving.settings.ENVIRONMENT``).

With ``workers > 1`` uvicorn starts that many worker processes on one socket; each builds
its own gateway with ``app_from_environment``, reading the environment it inherited, and
the parent restarts a worker that dies and stops them all when it is stopped."""

from __future__ import annotations

import uvicorn
from fastapi import FastAPI

from ..database import engine_with_tables
from . import predlog
from .settings import GatewaySettings


def app_from_environment() -> FastAPI:
    """The gateway of this process's environment: uvicorn's factory, called in each worker
    (imported here: a parent of workers never serves, and need not load the app)."""
    from .app import create_app

    return create_app(GatewaySettings.from_environment())


def prepare_prediction_log(url: str) -> None:
    """The log's tables created, and a SQLite log switched to WAL (the file keeps it), once
    before the workers start: workers creating the tables at once race (each finds none,
    the second CREATE fails), and in WAL mode one worker's reads never block another's
    writes."""
    engine_with_tables(url, predlog.metadata, shared=True).dispose()


def main() -> None:
    settings = GatewaySettings.from_environment()
    if settings.workers > 1:
        prepare_prediction_log(settings.log_url)
    uvicorn.run(
        "yieldops.serving.__main__:app_from_environment",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
    )


if __name__ == "__main__":
    main()
