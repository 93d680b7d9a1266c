"""Where things are: every URL and folder is configuration with a local default.

Environment variables set them for any process; the Airflow side may
override them at run time from Airflow Variables (see plugins/yieldops_airflow).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any


def _home() -> Path:
    return Path(os.environ.get("YIELDOPS_HOME", Path.home() / "yieldops-data")).resolve()


def _env(name: str, default: str) -> str:
    return os.environ.get(name) or default


@dataclass(frozen=True)
class Settings:
    home: Path = field(default_factory=_home)
    landing_url: str = ""
    ledger_url: str = ""
    curated_dir: Path = Path()
    docs_dir: Path = Path()
    # How new files start an ingest run: "sensor" (a deferrable sensor polls the
    # landing zone), "events" (S3 notifications through SQS, plus a periodic
    # sweep) or "sweep" (the periodic sweep alone).
    ingest_trigger: str = "sensor"
    sqs_queue_url: str = ""
    aws_conn_id: str = "aws_default"
    sweep_cron: str = "*/30 * * * *"
    # How often the ingest sensor looks for new files (sensor mode).
    sensor_poke_seconds: float = 30.0
    # How long one continuous run waits for files before ending (skipped) and the next one
    # starts. Runs triggered by hand do not wait for it: the waiting sensor gives way.
    sensor_timeout_seconds: float = 3600.0
    # Completeness (yieldops.completeness): how long a file of a tester that writes no MRR
    # must stay unchanged to be complete (a die's records come every few seconds), and how
    # long after its last change an incomplete file waits before it is quarantined (longer
    # than any pause inside a lot: holds, probe card changes, shift changes).
    incomplete_quiet_seconds: float = 300.0
    incomplete_max_age_seconds: float = 86400.0
    # Empty: a local MLflow store under home (see yieldops.training.registry).
    mlflow_tracking_uri: str = ""
    # The rollout audit log (SQLAlchemy URL).
    rollout_db_url: str = ""
    # Defaults of model_rollout's params (the demo shortens them; the UI form overrides).
    rollout_step_seconds: int = 300
    rollout_min_samples: int = 200
    rollout_poll_seconds: float = 10.0
    rollout_canary_steps: tuple[int, ...] = (5, 25, 50, 100)
    # How far a compressed landed file may decompress (yieldops.stdf.DecompressionLimits).
    max_decompressed_bytes: int = 32 << 30
    max_compression_ratio: float = 200.0

    def with_overrides(self, **values: str) -> Settings:
        """These settings with the given non-empty values, each read as its field's type
        (Airflow Variables are text)."""
        known: dict[str, Any] = {
            name: _typed_like(getattr(self, name), value) for name, value in values.items() if value
        }
        return replace(self, **known)


def _typed_like(current: Any, text: str) -> Any:
    return text if isinstance(current, str) else type(current)(text)  # Path, int, float


def load_settings() -> Settings:
    home = _home()
    return Settings(
        home=home,
        landing_url=_env("YIELDOPS_LANDING_URL", str(home / "landing")),
        ledger_url=_env("YIELDOPS_LEDGER_URL", f"sqlite:///{home / 'ledger.db'}"),
        curated_dir=Path(_env("YIELDOPS_CURATED_DIR", str(home / "curated"))),
        docs_dir=Path(_env("YIELDOPS_DATA_DOCS_DIR", str(home / "data-docs"))),
        ingest_trigger=_env("YIELDOPS_INGEST_TRIGGER", "sensor"),
        sqs_queue_url=_env("YIELDOPS_SQS_QUEUE_URL", ""),
        aws_conn_id=_env("YIELDOPS_AWS_CONN_ID", "aws_default"),
        sweep_cron=_env("YIELDOPS_SWEEP_CRON", "*/30 * * * *"),
        sensor_poke_seconds=float(_env("YIELDOPS_SENSOR_POKE_SECONDS", "30")),
        sensor_timeout_seconds=float(_env("YIELDOPS_SENSOR_TIMEOUT_SECONDS", "3600")),
        incomplete_quiet_seconds=float(_env("YIELDOPS_INCOMPLETE_QUIET_SECONDS", "300")),
        incomplete_max_age_seconds=float(_env("YIELDOPS_INCOMPLETE_MAX_AGE_SECONDS", "86400")),
        mlflow_tracking_uri=_env("MLFLOW_TRACKING_URI", ""),
        rollout_db_url=_env("YIELDOPS_ROLLOUT_DB_URL", f"sqlite:///{home / 'rollout.db'}"),
        rollout_step_seconds=int(_env("YIELDOPS_ROLLOUT_STEP_SECONDS", "300")),
        rollout_min_samples=int(_env("YIELDOPS_ROLLOUT_MIN_SAMPLES", "200")),
        rollout_poll_seconds=float(_env("YIELDOPS_ROLLOUT_POLL_SECONDS", "10")),
        rollout_canary_steps=tuple(
            int(w) for w in _env("YIELDOPS_ROLLOUT_CANARY_STEPS", "5,25,50,100").split(",")
        ),
        max_decompressed_bytes=int(_env("YIELDOPS_MAX_DECOMPRESSED_BYTES", str(32 << 30))),
        max_compression_ratio=float(_env("YIELDOPS_MAX_COMPRESSION_RATIO", "200")),
    )
