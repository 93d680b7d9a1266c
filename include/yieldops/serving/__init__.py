"""The prediction gateway: an ASGI app (FastAPI, run by uvicorn) serving the yield model.

- :mod:`.routing`  the routing table (champion, challenger, mode), persisted atomically
- :mod:`.records`  prediction requests parsed into dies (key + features)
- :mod:`.models`   loaded model versions, swapped atomically after loading
- :mod:`.mirror`   mirrored copies, scored by worker processes off the callers' path
- :mod:`.predlog`  the prediction log (SQLAlchemy), written by a background thread
- :mod:`.metrics`  Prometheus counters and latency histograms
- :mod:`.app`      ``create_app(settings)``

No Airflow here: the rollout DAG steers the gateway over HTTP.
"""

from __future__ import annotations

from .app import create_app
from .routing import MODES, Routing, RoutingError
from .settings import GatewaySettings, load_gateway_settings

__all__ = [
    "MODES",
    "GatewaySettings",
    "Routing",
    "RoutingError",
    "create_app",
    "load_gateway_settings",
]
