"""``python -m yieldops.serving``: the gateway on uvicorn, configured from the environment
(the variables are those of ``yieldops.serving.settings.ENVIRONMENT``).

With ``workers > 1`` uvicorn starts that many worker processes on one socket; each builds
its own gateway with ``app_from_environment``, reading the environment it inherited, and
the parent restarts a worker that dies and stops them all when it is stopped."""

from __future__ import annotations

import uvicorn
from fastapi import FastAPI

from .app import create_app
from .settings import GatewaySettings


def app_from_environment() -> FastAPI:
    """The gateway of this process's environment: uvicorn's factory, called in each worker."""
    return create_app(GatewaySettings.from_environment())


def main() -> None:
    settings = GatewaySettings.from_environment()
    uvicorn.run(
        "yieldops.serving.__main__:app_from_environment",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
    )


if __name__ == "__main__":
    main()
