"""Settings, landing zone and ledger for code running inside Airflow.

Environment variables give the defaults (``yieldops.settings``); Airflow
Variables named ``yieldops_<setting>`` override them at run time, and S3
access goes through the Airflow AWS connection ``aws_conn_id``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from yieldops.landing.factory import landing_zone
from yieldops.landing.ledger import Ledger
from yieldops.landing.zones import LandingZone
from yieldops.settings import Settings, load_settings

OVERRIDABLE = (
    "landing_url",
    "ledger_url",
    "curated_dir",
    "docs_dir",
    "aws_conn_id",
    "mlflow_tracking_uri",
    "rollout_db_url",
    "incomplete_quiet_seconds",
    "incomplete_max_age_seconds",
    "max_decompressed_bytes",
    "max_compression_ratio",
)


def runtime_settings() -> Settings:
    """Settings with Airflow Variable overrides; call only at task run time."""
    from airflow.sdk import Variable

    settings = load_settings()
    overrides = {name: Variable.get(f"yieldops_{name}", default="") for name in OVERRIDABLE}
    return settings.with_overrides(**overrides)


def zone_for(settings: Settings) -> LandingZone:
    if settings.landing_url.startswith("s3://"):
        from airflow.providers.amazon.aws.hooks.s3 import S3Hook

        return landing_zone(
            settings.landing_url, S3Hook(aws_conn_id=settings.aws_conn_id).get_conn()
        )
    return landing_zone(settings.landing_url)


@contextmanager
def open_ledger(settings: Settings) -> Iterator[Ledger]:
    """The ledger for one task's work, its connections closed afterwards."""
    ledger = Ledger(settings.ledger_url)
    try:
        yield ledger
    finally:
        ledger.close()


def base_url(conn) -> str:
    """``scheme://host[:port]`` of an HTTP connection (schema http by default)."""
    port = f":{conn.port}" if conn.port else ""
    return f"{conn.schema or 'http'}://{conn.host}{port}"
