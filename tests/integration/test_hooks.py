"""The hooks tasks, triggers and the plugin's pages reach gateways, the MLflow store and the
landing zone through, on real Airflow connections (``AIRFLOW_CONN_<ID>`` JSON), a real
gateway on loopback, a real MLflow SQLite store and a landing bucket on moto."""

from __future__ import annotations

import json
from dataclasses import replace
from urllib.parse import urlsplit

import mlflow
import pandas as pd
import pytest
from sklearn.dummy import DummyClassifier
from tests.integration.conftest import serve_gateway

from yieldops.serving.client import GatewayNotConfigured
from yieldops.serving.settings import GatewaySettings
from yieldops.settings import Settings
from yieldops_airflow.hooks import GatewayHook, LandingZoneHook, MlflowStoreHook

CONN_ID = "yieldops_gateway_hooktest"
TOKEN = "hook-test-token"


def define_connection(monkeypatch, conn_id: str, connection: dict) -> None:
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(connection))


@pytest.fixture
def gateway(tmp_path, monkeypatch):
    """A gateway serving a constant model as champion, and its connection defined."""
    features = pd.DataFrame({"test_100": [0.0, 1.0]})
    model = DummyClassifier(strategy="constant", constant=1).fit(features, [0, 1])
    settings = GatewaySettings(
        model_name="yield-hooktest",
        routing_path=tmp_path / "routing.json",
        log_url=f"sqlite:///{tmp_path / 'predictions.db'}",
        admin_token=TOKEN,
        initial_champion=1,
    )
    with serve_gateway(settings, lambda version: model) as (client, _):
        served = replace(settings, port=client.base_url.port)
        define_connection(monkeypatch, CONN_ID, served.airflow_connection())
        yield served


def test_the_gateway_hook_steers_a_real_gateway_through_its_connection(gateway):
    hook = GatewayHook(CONN_ID, target="hooktest")
    assert hook.gateway_settings().url == gateway.url
    client = hook.get_conn()
    assert client.routing()["champion"] == 1
    # The admin endpoints take the connection's password as the gateway's admin token.
    assert client.update(mode="off")["mode"] == "off"
    assert client.rollback()["champion"] == 1
    assert hook.prediction_log_url() == gateway.log_url


def test_an_https_connection_without_port_reaches_the_default_port(monkeypatch):
    define_connection(
        monkeypatch,
        CONN_ID,
        {"conn_type": "http", "host": "gw.example", "schema": "https", "password": TOKEN},
    )
    gateway = GatewayHook(CONN_ID).gateway_settings()
    assert (gateway.url, gateway.admin_token) == ("https://gw.example:443", TOKEN)
    assert gateway.airflow_connection()["schema"] == "https"


def test_a_missing_connection_says_how_to_define_it(monkeypatch):
    monkeypatch.delenv(f"AIRFLOW_CONN_{CONN_ID.upper()}", raising=False)
    with pytest.raises(GatewayNotConfigured) as raised:
        GatewayHook(CONN_ID, target="adc-local").get_conn()
    message = str(raised.value)
    assert f"target adc-local: gateway connection {CONN_ID!r} not configured" in message
    assert f"add an HTTP connection {CONN_ID!r}" in message
    assert "password = its admin token" in message and "prediction_log_url" in message


def test_a_connection_without_its_prediction_log_names_the_missing_extra(monkeypatch):
    define_connection(monkeypatch, CONN_ID, {"conn_type": "http", "host": "127.0.0.1"})
    with pytest.raises(GatewayNotConfigured, match="has no extra prediction_log_url"):
        GatewayHook(CONN_ID, target="adc-local").prediction_log_url()


def test_the_mlflow_store_hook_points_mlflow_at_the_configured_store(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    previous = mlflow.get_tracking_uri()
    try:
        local = MlflowStoreHook(Settings(home=tmp_path)).use()
        assert local == mlflow.get_tracking_uri() == f"sqlite:///{tmp_path.resolve()}/mlflow.db"
        given = f"sqlite:///{tmp_path / 'given.db'}"
        assert MlflowStoreHook(Settings(home=tmp_path, mlflow_tracking_uri=given)).use() == given
        assert mlflow.get_tracking_uri() == given
    finally:
        mlflow.set_tracking_uri(previous)


def test_the_landing_zone_hook_lists_a_folder(tmp_path):
    (tmp_path / "lot1.stdf").write_bytes(b"x")
    zone = LandingZoneHook(Settings(landing_url=str(tmp_path))).get_conn()
    assert [f.key for f in zone.list_files()] == ["lot1.stdf"]


def test_the_landing_zone_hook_reaches_s3_through_the_aws_connection(s3_client, moto_connection):
    s3_client.create_bucket(Bucket="hooktest-landing")
    s3_client.put_object(Bucket="hooktest-landing", Key="in/lot2.stdf", Body=b"x")
    settings = Settings(landing_url="s3://hooktest-landing/in", aws_conn_id=moto_connection)
    zone = LandingZoneHook(settings).get_conn()
    assert [f.key for f in zone.list_files()] == ["lot2.stdf"]
    assert urlsplit(zone.uri("lot2.stdf")).netloc == "hooktest-landing"
