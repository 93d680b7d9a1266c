"""``python -m yieldops.serving``: the gateway on uvicorn, configured from the environment
(the variables are those of ``yieldops.serving.settings.ENVIRONMENT``)."""

from __future__ import annotations

import uvicorn

from .app import create_app
from .settings import GatewaySettings


def main() -> None:
    settings = GatewaySettings.from_environment()
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port)


if __name__ == "__main__":
    main()
