"""The task buttons' URLs."""

from __future__ import annotations

from yieldops_airflow.links import MlflowRunLink, WaferMapsLink, mlflow_run_urls


def test_a_tracking_server_gives_run_and_picture_buttons():
    urls = mlflow_run_urls("http://127.0.0.1:5000/", "7", "abc")
    assert urls == {
        MlflowRunLink().xcom_key: "http://127.0.0.1:5000/#/experiments/7/runs/abc",
        WaferMapsLink().xcom_key: "http://127.0.0.1:5000/#/experiments/7/runs/abc/artifacts",
    }


def test_a_local_store_gives_no_button():
    assert mlflow_run_urls("sqlite:////tmp/mlflow.db", "7", "abc") == {}
