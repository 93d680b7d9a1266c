"""Gateway configuration: every path and URL with a local default under ``YIELDOPS_HOME``."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ..settings import _home


@dataclass(frozen=True)
class GatewaySettings:
    # Registered MLflow model the default loader reads versions of (e.g. yield-<product>).
    model_name: str = ""
    # The routing table, a JSON file written atomically (survives restarts).
    routing_path: Path = Path("routing.json")
    # Prediction log: any SQLAlchemy URL (SQLite by default).
    log_url: str = "sqlite:///predictions.db"
    # Bearer token of the admin endpoints; empty: admin endpoints refuse everyone.
    admin_token: str = ""
    # Champion when no routing file exists yet; None: the MLflow alias ``champion``.
    initial_champion: int | None = None
    mlflow_tracking_uri: str = ""
    # Mirrored copies are scored by worker processes, not in the gateway's interpreter.
    mirror_processes: int = 1
    # Requests whose copies wait beyond this are dropped (counted), never queued without end.
    mirror_max_pending: int = 64
    # Added to the workers' nice value: when the CPU is short, the callers get it first.
    mirror_niceness: int = 10
    # Prediction log writer: rows per insert and the longest wait before writing.
    log_batch_rows: int = 500
    log_flush_seconds: float = 0.2
    # Records per predict request; more is refused with 413.
    max_batch: int = 10_000
    # OpenMP threads for model calls (HistGradientBoosting crawls with many on a shared box);
    # None leaves the process as it is.
    model_threads: int | None = 1
    host: str = "127.0.0.1"
    port: int = 8080


def load_gateway_settings() -> GatewaySettings:
    """Settings from the environment (``YIELDOPS_GATEWAY_*``), defaults under home."""
    home = _home()
    env = os.environ.get
    champion = env("YIELDOPS_GATEWAY_CHAMPION")
    return GatewaySettings(
        model_name=env("YIELDOPS_GATEWAY_MODEL", ""),
        routing_path=Path(env("YIELDOPS_GATEWAY_ROUTING_PATH") or home / "gateway-routing.json"),
        log_url=env("YIELDOPS_GATEWAY_LOG_URL") or f"sqlite:///{home / 'predictions.db'}",
        admin_token=env("YIELDOPS_GATEWAY_ADMIN_TOKEN", ""),
        initial_champion=int(champion) if champion else None,
        mlflow_tracking_uri=env("MLFLOW_TRACKING_URI", ""),
        mirror_processes=int(env("YIELDOPS_GATEWAY_MIRROR_PROCESSES", "1")),
        mirror_niceness=int(env("YIELDOPS_GATEWAY_MIRROR_NICENESS", "10")),
        mirror_max_pending=int(env("YIELDOPS_GATEWAY_MIRROR_MAX_PENDING", "64")),
        host=env("YIELDOPS_GATEWAY_HOST", "127.0.0.1"),
        port=int(env("YIELDOPS_GATEWAY_PORT", "8080")),
    )
