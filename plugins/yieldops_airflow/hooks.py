"""Hooks, as Airflow's providers have them: how tasks, triggers and the plugin's pages reach
a target's prediction gateway, the MLflow store and the landing zone from Airflow's
configuration (connections, and Variables through ``runtime_settings``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from airflow.sdk import BaseHook

from yieldops_airflow.runtime import runtime_settings

if TYPE_CHECKING:
    from yieldops.landing.zones import LandingZone
    from yieldops.serving.client import GatewayClient
    from yieldops.serving.settings import GatewaySettings
    from yieldops.settings import Settings


class GatewayHook(BaseHook):
    """A deployment target's prediction gateway, from its HTTP connection: host, port and
    schema give the URL, the password is the admin token, ``extra.prediction_log_url`` the
    SQLAlchemy URL of its prediction log (``GatewaySettings.from_airflow_connection``)."""

    conn_name_attr = "gateway_conn_id"
    conn_type = "http"
    hook_name = "yieldops prediction gateway"

    def __init__(self, gateway_conn_id: str, target: str = "", timeout: float = 30.0) -> None:
        super().__init__()
        self.gateway_conn_id = gateway_conn_id
        self.target = target or gateway_conn_id
        self.timeout = timeout
        self._gateway: GatewaySettings | None = None

    @classmethod
    def for_target(cls, target_name: str, timeout: float = 30.0) -> GatewayHook:
        from yieldops.rollout.targets import load_targets

        target = next(t for t in load_targets() if t.name == target_name)
        return cls(target.conn_id, target.name, timeout)

    def get_conn(self) -> GatewayClient:
        from yieldops.serving.client import GatewayClient

        gateway = self.gateway_settings()
        return GatewayClient(gateway.url, gateway.admin_token, self.timeout)

    def prediction_log_url(self) -> str:
        from yieldops.serving.client import GatewayNotConfigured

        url = self.gateway_settings().log_url
        if not url:
            raise GatewayNotConfigured(self.target, self.gateway_conn_id, "prediction_log_url")
        return url

    def gateway_settings(self) -> GatewaySettings:
        """The gateway as its connection describes it, looked up once per hook (in a task,
        each lookup is a call to Airflow's API); GatewayNotConfigured without one."""
        if self._gateway is None:
            self._gateway = self._read_connection()
        return self._gateway

    def _read_connection(self) -> GatewaySettings:
        from airflow.sdk.exceptions import AirflowNotFoundException

        from yieldops.serving.client import GatewayNotConfigured
        from yieldops.serving.settings import GatewaySettings

        try:
            conn = self.get_connection(self.gateway_conn_id)
        except AirflowNotFoundException as exc:
            raise GatewayNotConfigured(self.target, self.gateway_conn_id) from exc
        return GatewaySettings.from_airflow_connection(conn)


class MlflowStoreHook:
    """The configured MLflow store (setting ``mlflow_tracking_uri``, else
    ``MLFLOW_TRACKING_URI``, else the local store under home), for this process."""

    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings

    def use(self) -> str:
        """Point MLflow at the store; returns its tracking URI."""
        from yieldops.training.registry import use_configured_store

        settings = self.settings or runtime_settings()
        return use_configured_store(settings.home, settings.mlflow_tracking_uri or None)


class LandingZoneHook:
    """The landing zone (a folder, or an S3 prefix through the AWS connection
    ``aws_conn_id``)."""

    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings

    def get_conn(self) -> LandingZone:
        from yieldops.landing.factory import landing_zone

        settings = self.settings or runtime_settings()
        if settings.landing_url.startswith("s3://"):
            from airflow.providers.amazon.aws.hooks.s3 import S3Hook

            client = S3Hook(aws_conn_id=settings.aws_conn_id).get_conn()
            return landing_zone(settings.landing_url, client)
        return landing_zone(settings.landing_url)
