"""``python -m yieldops.serving``: the gateway on uvicorn, configured from the environment.

``YIELDOPS_GATEWAY_MODEL`` (registered model, e.g. ``yield-<product>``),
``YIELDOPS_GATEWAY_ADMIN_TOKEN``, ``YIELDOPS_GATEWAY_ROUTING_PATH``,
``YIELDOPS_GATEWAY_LOG_URL``, ``YIELDOPS_GATEWAY_CHAMPION``, ``YIELDOPS_GATEWAY_HOST``,
``YIELDOPS_GATEWAY_PORT``, ``YIELDOPS_GATEWAY_MIRROR_PROCESSES`` (mirror worker processes,
1), ``YIELDOPS_GATEWAY_MIRROR_NICENESS`` (added to their nice value, 10),
``MLFLOW_TRACKING_URI``.
"""

from __future__ import annotations

import uvicorn

from . import create_app, load_gateway_settings


def main() -> None:
    settings = load_gateway_settings()
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port)


if __name__ == "__main__":
    main()
