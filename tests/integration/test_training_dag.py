"""yield_training end to end with dag.test(): curated data -> gate -> MLflow registry."""

from __future__ import annotations

import hashlib

import mlflow
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from tests.integration.conftest import load_dag, task_states

from yieldops.curated.dataset import write_file_tables
from yieldops.stdf import read_tables
from yieldops.synth import PRODUCTS, synthesize

PRODUCT = "YO-28NM-PMIC"
MODEL = f"yield-{PRODUCT}"


@pytest.fixture
def curated(tmp_path, monkeypatch, airflow_db):
    """Four curated lots of the PMIC, as stdf_ingest would leave them."""
    home = tmp_path / "home"
    monkeypatch.setenv("YIELDOPS_HOME", str(home))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    paths = synthesize(
        tmp_path / "stdf", lots=4, wafers_per_lot=1, seed=0, product=PRODUCTS[PRODUCT], drift=0.3
    )
    _curate(paths, home)
    yield home
    mlflow.set_tracking_uri(None)


def _curate(paths, home) -> None:
    for path in paths:
        tables = read_tables(path)
        lot_id = tables["lots"]["lot_id"][0].as_py()
        sha = hashlib.sha256(path.read_bytes()).hexdigest()
        write_file_tables(tables, home / "curated", PRODUCT, lot_id, sha)


def _asset_events(name: str) -> int:
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session

    with create_session() as session:
        query = session.query(AssetEvent).join(AssetModel, AssetEvent.asset_id == AssetModel.id)
        return query.filter(AssetModel.name == name).count()


def _xcom(run, task_id: str, key: str):
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        row = (
            session.query(XComModel)
            .filter_by(dag_id=run.dag_id, run_id=run.run_id, task_id=task_id, key=key)
            .one()
        )
        return XComModel.deserialize_value(row)


def _client(home):
    mlflow.set_tracking_uri(f"sqlite:///{home / 'mlflow.db'}")
    return mlflow.MlflowClient()


def _shuffle_labels(home) -> None:
    """Worse data: the same dies with their hard bins shuffled across the product."""
    rng = np.random.default_rng(7)
    for path in sorted((home / "curated").glob("**/parts.parquet")):
        parts = pq.read_table(path)
        shuffled = rng.permutation(parts["hard_bin"].to_numpy())
        parts = parts.set_column(
            parts.schema.get_field_index("hard_bin"), "hard_bin", pa.array(shuffled)
        )
        pq.write_table(parts, path)


def test_register_then_reject_worse_data_then_pass_against_a_weaker_champion(
    curated, tmp_path, plugin_client
):
    import pandas as pd
    import skops.io

    from yieldops.training.registry import register_challenger
    from yieldops_airflow.links import WaferMapsLink

    dag = load_dag("yield_training")

    # 1. No champion yet: the absolute gate alone decides; version 1 becomes the challenger.
    first = dag.test(run_conf={"product": PRODUCT})
    assert first.state == "success"
    states = task_states(first)
    assert states["register"] == "success" and states["reject"] == "skipped"
    client = _client(curated)
    v1 = client.get_model_version_by_alias(MODEL, "challenger")
    assert int(v1.version) == 1 and v1.tags["gate.passed"] == "true"
    with pytest.raises(mlflow.exceptions.MlflowException):
        client.get_model_version_by_alias(MODEL, "champion")  # training never moves champion

    # The registered model predicts exactly what was trained.
    run_dir = next((curated / "training" / PRODUCT).iterdir())
    holdout = pd.read_parquet(run_dir / "holdout.parquet")
    model_file = run_dir / "challenger.skops"
    trained = skops.io.load(model_file, trusted=skops.io.get_untrusted_types(file=model_file))
    registered = mlflow.sklearn.load_model(f"models:/{MODEL}@challenger")
    columns = list(trained.feature_names_in_)
    assert np.array_equal(
        trained.predict_proba(holdout[columns]), registered.predict_proba(holdout[columns])
    )
    mlflow_run = client.get_run(v1.run_id)
    assert (
        mlflow_run.data.metrics["roc_auc"] >= 0.80 and mlflow_run.data.metrics["accuracy"] >= 0.85
    )
    artifacts = {a.path for a in client.list_artifacts(v1.run_id, "plots")}
    assert {"plots/roc_curve.png", "plots/confusion_matrix.png"} <= artifacts
    assert any(p.endswith("_predicted_fail.png") for p in artifacts)
    # The register task's "Wafer maps" button: every picture on one page the plugin serves.
    wafer_maps = _xcom(first, "register", WaferMapsLink().xcom_key)
    assert wafer_maps == f"/yieldops/wafer-maps/{v1.run_id}"
    page = plugin_client.get(wafer_maps.removeprefix("/yieldops"))
    assert page.status_code == 200 and page.text.count("<img") == len(artifacts)
    assert plugin_client.get("/wafer-maps/no-such-run").status_code == 404
    assert mlflow_run.data.tags["git_commit"]
    assert _asset_events(f"model/{MODEL}/challenger") == 1  # schedules model_rollout

    # 2. Worse data (labels shuffled), with v1 as champion: the gate rejects, nothing registered.
    client.set_registered_model_alias(MODEL, "champion", "1")
    _shuffle_labels(curated)
    second = dag.test(run_conf={"product": PRODUCT})
    assert second.state == "success"
    states = task_states(second)
    assert states["register"] == "skipped" and states["reject"] == "success"
    assert [int(v.version) for v in client.search_model_versions(f"name='{MODEL}'")] == [1]
    rejected = client.search_runs(
        [client.get_experiment_by_name(f"yield/{PRODUCT}").experiment_id], "tags.gate = 'rejected'"
    )
    assert len(rejected) == 1 and "roc_auc" in rejected[0].data.tags["gate_reasons"]

    # 3. That weak model made champion by hand: a good challenger passes the relative gate.
    weak = register_challenger(
        rejected[0].info.run_id, MODEL, {"passed": False, "reasons": ["test"]}
    )
    client.set_registered_model_alias(MODEL, "champion", str(weak))
    _curate(sorted((tmp_path / "stdf").iterdir()), curated)  # the true labels again
    third = dag.test(run_conf={"product": PRODUCT})
    assert third.state == "success" and task_states(third)["register"] == "success"
    latest = client.get_model_version_by_alias(MODEL, "challenger")
    assert int(latest.version) == 3
    assert int(client.get_model_version_by_alias(MODEL, "champion").version) == weak
    metrics = client.get_run(latest.run_id).data.metrics
    assert metrics["roc_auc"] > metrics["champion_roc_auc"] + 0.1
    assert _asset_events(f"model/{MODEL}/challenger") == 2  # none for the rejected run


def test_too_little_data_is_skipped_not_rejected(tmp_path, monkeypatch, airflow_db):
    home = tmp_path / "home"
    monkeypatch.setenv("YIELDOPS_HOME", str(home))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    _curate(
        synthesize(tmp_path / "stdf", lots=1, wafers_per_lot=1, product=PRODUCTS[PRODUCT]), home
    )

    run = load_dag("yield_training").test(run_conf={"product": PRODUCT})

    assert run.state == "success"
    states = task_states(run)
    assert states["not_enough_data"] == "success"
    assert {states[t] for t in ("train", "evaluate", "gate", "register", "reject")} == {"skipped"}
    skipped = _xcom(run, "not_enough_data", "return_value")
    assert skipped["skipped"] is True
    assert skipped["reason"].startswith(
        f"{PRODUCT}: not enough data: 1 lot(s) cannot give 1 holdout lot(s) and a training lot"
    )
    assert "dies are on one wafer (a wafer is never split)" in skipped["reason"]
    mlflow.set_tracking_uri(None)


def test_one_lot_of_several_wafers_reaches_a_gate_verdict(tmp_path, monkeypatch, airflow_db):
    """Fewer lots than a lot holdout needs: the newest wafers are held out, the gate judges."""
    home = tmp_path / "home"
    monkeypatch.setenv("YIELDOPS_HOME", str(home))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    spec = PRODUCTS[PRODUCT]
    _curate(synthesize(tmp_path / "stdf", lots=1, wafers_per_lot=4, product=spec), home)

    run = load_dag("yield_training").test(run_conf={"product": PRODUCT})

    assert run.state == "success"
    states = task_states(run)
    assert states["not_enough_data"] == "skipped" and states["gate"] == "success"
    verdict = "register" if states["register"] == "success" else "reject"
    assert states["reject" if verdict == "register" else "register"] == "skipped"
    features = _xcom(run, "build_features", "return_value")
    assert features["holdout"]["by"] == "wafers"
    assert "held out the newest 1 of 4 wafers" in features["holdout"]["note"]
    client = _client(home)
    (mlflow_run,) = client.search_runs(
        [client.get_experiment_by_name(f"yield/{PRODUCT}").experiment_id]
    )
    assert mlflow_run.data.tags["holdout"] == features["holdout"]["note"]  # said in MLflow
    assert (
        mlflow_run.data.metrics["accuracy"] > 0 and "no_skill.accuracy" in mlflow_run.data.metrics
    )
    mlflow.set_tracking_uri(None)
