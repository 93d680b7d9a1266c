"""Gateway configuration, declared once for every side that names a gateway: the gateway
process reads it from its environment (``from_environment``), whoever starts one writes
that environment (``to_environment``), and Airflow reaches it through an HTTP connection
(``airflow_connection`` / ``from_airflow_connection``)."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..settings import _home

# What a gateway process reads from its environment: field -> (variable, parser).
ENVIRONMENT: dict[str, tuple[str, Callable[[str], Any]]] = {
    "model_name": ("YIELDOPS_GATEWAY_MODEL", str),
    "routing_path": ("YIELDOPS_GATEWAY_ROUTING_PATH", Path),
    "log_url": ("YIELDOPS_GATEWAY_LOG_URL", str),
    "admin_token": ("YIELDOPS_GATEWAY_ADMIN_TOKEN", str),
    "initial_champion": ("YIELDOPS_GATEWAY_CHAMPION", int),
    "mlflow_tracking_uri": ("MLFLOW_TRACKING_URI", str),
    "mirror_processes": ("YIELDOPS_GATEWAY_MIRROR_PROCESSES", int),
    "mirror_niceness": ("YIELDOPS_GATEWAY_MIRROR_NICENESS", int),
    "mirror_max_pending": ("YIELDOPS_GATEWAY_MIRROR_MAX_PENDING", int),
    "batch_max_dies": ("YIELDOPS_GATEWAY_BATCH_MAX_DIES", int),
    "batch_wait_seconds": ("YIELDOPS_GATEWAY_BATCH_WAIT_SECONDS", float),
    "max_body_bytes": ("YIELDOPS_GATEWAY_MAX_BODY_BYTES", int),
    "max_batch": ("YIELDOPS_GATEWAY_MAX_BATCH", int),
    "workers": ("YIELDOPS_GATEWAY_WORKERS", int),
    "host": ("YIELDOPS_GATEWAY_HOST", str),
    "port": ("YIELDOPS_GATEWAY_PORT", int),
}


@dataclass(frozen=True)
class GatewaySettings:
    # Registered MLflow model the default loader reads versions of (e.g. yield-<product>).
    model_name: str = ""
    # The routing table, a JSON file written atomically (survives restarts).
    routing_path: Path = Path("routing.json")
    # Prediction log: any SQLAlchemy URL (SQLite by default).
    log_url: str = "sqlite:///predictions.db"
    # Bearer token of the admin endpoints; empty: admin endpoints refuse everyone (403, and
    # the gateway warns at start).
    admin_token: str = ""
    # Champion when no routing file exists yet; None: the MLflow alias ``champion``.
    initial_champion: int | None = None
    mlflow_tracking_uri: str = ""
    # Mirrored copies are scored by worker processes, not in the gateway's interpreter.
    mirror_processes: int = 1
    # Copies are dropped (counted) past this many dies waiting, never queued without end:
    # seconds of a busy test floor's traffic; the bodies take ~25 bytes a test a die.
    mirror_max_pending: int = 10_000
    # Added to the workers' nice value: when the CPU is short, the callers get it first.
    mirror_niceness: int = 10
    # Prediction log writer: rows per insert and the longest wait before writing.
    log_batch_rows: int = 500
    log_flush_seconds: float = 0.2
    # Bytes of a request body; a longer one is refused with 413 before it is read (by its
    # Content-Length, or as soon as a chunked body passes it).
    max_body_bytes: int = 4 * 1024 * 1024
    # Records per predict request; more is refused with 413 before any record is parsed.
    max_batch: int = 10_000
    # Requests waiting on one version are scored in one model call of up to this many dies;
    # while requests arrive together, a call first waits this long for more (see batching).
    batch_max_dies: int = 1000
    batch_wait_seconds: float = 0.001
    # OpenMP threads for model calls (HistGradientBoosting crawls with many on a shared box);
    # None leaves the process as it is.
    model_threads: int | None = 1
    # Gateway processes serving one port (uvicorn's workers), each a whole gateway; they
    # serve one routing table by following its file (see follow).
    workers: int = 1
    host: str = "127.0.0.1"
    port: int = 8080
    # How callers reach it: the gateway speaks http; https when a TLS proxy stands before it.
    scheme: str = "http"

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}"

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> GatewaySettings:
        """Settings from the variables of ``ENVIRONMENT`` (this process's by default); the
        routing table and the prediction log default to files under ``YIELDOPS_HOME``."""
        environ = os.environ if environ is None else environ
        home = Path(environ.get("YIELDOPS_HOME") or _home()).resolve()
        given = {
            name: parse(environ[variable])
            for name, (variable, parse) in ENVIRONMENT.items()
            if environ.get(variable)
        }
        return cls(
            **{
                "routing_path": home / "gateway-routing.json",
                "log_url": f"sqlite:///{home / 'predictions.db'}",
                **given,
            }
        )

    def to_environment(self) -> dict[str, str]:
        """The environment that starts a gateway process with these settings. Empty and
        None values are left out: the process inherits them, or takes its defaults."""
        values = {variable: getattr(self, name) for name, (variable, _) in ENVIRONMENT.items()}
        return {variable: str(v) for variable, v in values.items() if v not in ("", None)}

    def airflow_connection(self, host: str = "") -> dict[str, Any]:
        """The Airflow HTTP connection (JSON form, as ``AIRFLOW_CONN_<ID>`` holds it) that
        reaches this gateway at ``host`` (default: the address it listens on): the password
        is the admin token, extra ``prediction_log_url`` the URL of its prediction log."""
        connection: dict[str, Any] = {
            "conn_type": "http",
            "host": host or self.host,
            "port": self.port,
            "password": self.admin_token,
            "extra": {"prediction_log_url": self.log_url},
        }
        if self.scheme != "http":
            connection["schema"] = self.scheme
        return connection

    @classmethod
    def from_airflow_connection(cls, conn: Any) -> GatewaySettings:
        """The gateway an Airflow HTTP connection names (host, port, schema, password,
        extra ``prediction_log_url``; empty when the extra is missing)."""
        scheme = conn.schema or "http"
        return cls(
            host=conn.host,
            port=conn.port or (443 if scheme == "https" else 80),
            scheme=scheme,
            admin_token=conn.password or "",
            log_url=conn.extra_dejson.get("prediction_log_url") or "",
        )
