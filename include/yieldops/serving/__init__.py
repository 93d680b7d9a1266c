"""The prediction gateway: an ASGI app (FastAPI, run by uvicorn) serving the yield model.

- :mod:`.settings` ``GatewaySettings``: the gateway's environment and its Airflow connection
- :mod:`.client`   ``GatewayClient``: its admin API for the rollout (httpx only)
- :mod:`.routing`  the routing table (champion, challenger, mode), persisted atomically
- :mod:`.records`  prediction requests parsed into dies (key + features)
- :mod:`.models`   loaded model versions, swapped atomically after loading
- :mod:`.mirror`   mirrored copies, scored by worker processes off the callers' path
- :mod:`.predlog`  the prediction log (SQLAlchemy), written by a background thread
- :mod:`.metrics`  Prometheus counters and latency histograms
- :mod:`.app`      ``create_app(settings)``
- :mod:`.replay`   curated dies sent to a gateway at a steady rate

No Airflow here: the rollout DAG steers the gateway over HTTP. This package imports
nothing itself: the triggerer reads the prediction log inside its event loop, and the
client and settings serve Airflow tasks, none of which should load the web app and its
models (import them from their modules).
"""
