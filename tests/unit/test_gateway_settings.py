"""GatewaySettings: the environment a gateway process is started with, read back by it."""

from __future__ import annotations

from pathlib import Path

from yieldops.serving.settings import ENVIRONMENT, GatewaySettings


def test_the_environment_a_gateway_is_started_with_gives_back_its_settings(tmp_path):
    settings = GatewaySettings(
        model_name="yield-P",
        routing_path=tmp_path / "routing.json",
        log_url="postgresql+psycopg://gw@db/predictions",
        admin_token="t0ken",
        initial_champion=3,
        mlflow_tracking_uri="http://mlflow:5000",
        mirror_processes=2,
        mirror_max_pending=8,
        mirror_niceness=5,
        workers=4,
        host="0.0.0.0",
        port=8123,
    )
    environment = settings.to_environment()
    assert set(environment) == {variable for variable, _ in ENVIRONMENT.values()}
    assert GatewaySettings.from_environment(environment) == settings


def test_unset_values_are_inherited_or_defaulted_under_home(tmp_path):
    environment = GatewaySettings(model_name="yield-P").to_environment()
    assert "MLFLOW_TRACKING_URI" not in environment  # the process inherits the stack's
    assert "YIELDOPS_GATEWAY_CHAMPION" not in environment  # the MLflow alias decides
    home = {"YIELDOPS_HOME": str(tmp_path)}
    settings = GatewaySettings.from_environment(home)
    assert settings.routing_path == tmp_path.resolve() / "gateway-routing.json"
    assert settings.log_url == f"sqlite:///{tmp_path.resolve() / 'predictions.db'}"
    assert (settings.host, settings.port, settings.initial_champion) == ("127.0.0.1", 8080, None)
    assert isinstance(settings.routing_path, Path)
