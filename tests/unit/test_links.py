"""The task buttons' URLs."""

from __future__ import annotations

from yieldops_airflow.links import MlflowRunLink, WaferMapsLink, training_run_links


def test_a_tracking_server_gives_run_and_picture_buttons():
    urls = training_run_links("http://127.0.0.1:5000/", "7", "abc")
    assert urls == {
        MlflowRunLink().xcom_key: "http://127.0.0.1:5000/#/experiments/7/runs/abc",
        WaferMapsLink().xcom_key: "/yieldops/wafer-maps/abc",
    }


def test_a_local_store_gives_the_pictures_button_only():
    urls = training_run_links("sqlite:////tmp/mlflow.db", "7", "abc")
    assert urls == {WaferMapsLink().xcom_key: "/yieldops/wafer-maps/abc"}
