"""The steps of one training run (``yieldops.training.flow``) without Airflow: real curated
Parquet from the synthetic fab and a real MLflow SQLite store, all under tmp."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient
from tests.unit.test_training import curate
from threadpoolctl import threadpool_limits

from yieldops.config import Gate, MetricGate, product
from yieldops.names import model_name
from yieldops.serving.models import LoadedModel, MlflowLoader
from yieldops.synth import PRODUCTS, synthesize
from yieldops.training import predict_good_proba, registry
from yieldops.training.flow import (
    FeatureSplit,
    Holdout,
    HoldoutScores,
    Registration,
    Rejection,
    ServingFormMismatch,
    Skipped,
    TrainingPlan,
    build_features,
    evaluate_challenger,
    features_of,
    judge,
    log_and_register,
    log_rejected,
    plan_training,
    train_challenger,
)

PMIC = product("YO-28NM-PMIC")
MODEL = model_name(PMIC.name)
RUN_ID = "manual__2026-01-02T03:04:05+00:00"


def as_json(record) -> dict:
    """The record's dict as it comes back from XCom: through JSON text."""
    return json.loads(json.dumps(record.to_dict()))


@pytest.fixture(scope="module", autouse=True)
def _one_openmp_thread():
    """HistGradientBoosting's OpenMP loops crawl when another process holds a core."""
    with threadpool_limits(limits=1, user_api="openmp"):
        yield


@pytest.fixture(scope="module")
def home(tmp_path_factory) -> Path:
    """Four curated PMIC lots of one wafer each."""
    home = tmp_path_factory.mktemp("flow")
    spec = PRODUCTS[PMIC.name]
    paths = synthesize(home / "landing", lots=4, wafers_per_lot=1, seed=0, drift=0.3, product=spec)
    curate(paths, home / "curated", PMIC.name)
    return home


@pytest.fixture(scope="module")
def experiment_id(home):
    """MLflow pointed at a fresh SQLite store under ``home``; unset afterwards."""
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("MLFLOW_TRACKING_URI", raising=False)
        try:
            yield registry.open_experiment(PMIC.name, home)
        finally:
            mlflow.set_tracking_uri(None)


@pytest.fixture(scope="module")
def split(home) -> FeatureSplit:
    planned = plan_training([PMIC.name], PMIC.name, RUN_ID, home)
    built = build_features(planned, home / "curated", PMIC)
    assert isinstance(built, FeatureSplit)
    return built


@pytest.fixture(scope="module")
def scores(split, experiment_id) -> HoldoutScores:
    train_challenger(split, PMIC)
    return evaluate_challenger(split, PMIC)


@pytest.fixture(scope="module")
def registration(scores, experiment_id, home) -> Registration:
    assert judge(scores, PMIC).passed
    return log_and_register(scores, PMIC, experiment_id, home / "curated")


def test_the_plan_trains_the_first_changed_product_and_leaves_the_others_a_run(tmp_path):
    planned = plan_training(["YO-7NM-ADC", "YO-28NM-PMIC"], "YO-7NM-ADC", RUN_ID, tmp_path, 2)

    assert planned.product == "YO-28NM-PMIC" and planned.other_products == ["YO-7NM-ADC"]
    assert planned.holdout_lots == 2
    folder = tmp_path / "training" / "YO-28NM-PMIC" / "manual__2026-01-02T03_04_05_00_00"
    assert planned.run_dir == folder and folder.is_dir()
    assert TrainingPlan.from_dict(as_json(planned)) == planned
    with pytest.raises(ValueError, match=r"not a FeatureSplit: \['feature_columns'"):
        FeatureSplit.from_dict({"plan": as_json(planned)})

    by_hand = plan_training([], "YO-7NM-ADC", "manual__1", tmp_path)
    assert by_hand.product == "YO-7NM-ADC" and by_hand.other_products == []
    assert by_hand.holdout_lots is None  # the product YAML's


def test_one_wafer_is_skipped_with_the_numbers_not_rejected(tmp_path):
    spec = PRODUCTS[PMIC.name]
    paths = synthesize(tmp_path / "stdf", lots=1, wafers_per_lot=1, product=spec)
    curated = curate(paths, tmp_path / "curated", PMIC.name)
    planned = plan_training([], PMIC.name, RUN_ID, tmp_path / "home")

    skipped = build_features(planned, curated, PMIC)

    assert isinstance(skipped, Skipped)
    assert skipped.reason.startswith(
        f"{PMIC.name}: not enough data: 1 lot(s) cannot give 1 holdout lot(s) and a training lot"
    )
    assert skipped.run_note() == f"{PMIC.name}: skipped: {skipped.reason}"
    subject, details = skipped.notification()
    assert subject == f"yield_training: {PMIC.name} skipped: not enough data"
    assert details == {"run_id": RUN_ID, "reason": skipped.reason}
    assert features_of(as_json(skipped)) == skipped and as_json(skipped)["skipped"] is True
    assert list(planned.run_dir.iterdir()) == []  # nothing to train on was written


def test_features_hold_out_the_newest_lot_whole(split, home):
    folder = split.plan.run_dir
    train = pd.read_parquet(folder / "train.parquet")
    holdout = pd.read_parquet(folder / "holdout.parquet")

    assert split.holdout.by == "lots" and len(split.holdout.lots) == 1
    assert len(split.train_lots) == 3 and not set(split.train_lots) & set(split.holdout.lots)
    assert set(holdout["lot_id"]) == set(split.holdout.lots)
    assert set(train["lot_id"]) == set(split.train_lots)
    assert set(split.feature_columns) <= set(train.columns)
    lineage = json.loads((folder / "lineage.json").read_text())
    assert lineage["holdout"]["lots"] == split.holdout.lots and lineage["train"]["files"]
    assert features_of(as_json(split)) == split


def test_the_challenger_is_scored_beside_no_skill_and_no_champion_yet(scores, split):
    assert scores.champion is None and scores.champion_version is None
    assert scores.challenger["roc_auc"] > scores.challenger["no_skill.roc_auc"] + 0.2
    evaluation = json.loads((split.plan.run_dir / "evaluation.json").read_text())
    assert evaluation["challenger"]["metrics"] == scores.challenger
    assert evaluation["champion"] is None
    assert HoldoutScores.from_dict(as_json(scores)) == scores


def test_a_passing_gate_registers_a_challenger_never_a_champion(registration, scores):
    client = MlflowClient()
    assert (registration.model, registration.version) == (MODEL, 1)
    assert int(client.get_model_version_by_alias(MODEL, "challenger").version) == 1
    assert registry.alias_version(MODEL, "champion") is None
    run = client.get_run(registration.mlflow_run_id)
    assert run.info.experiment_id == registration.experiment_id
    assert run.data.tags["gate"] == "passed" and run.data.tags["airflow_run_id"] == RUN_ID
    assert run.data.tags["holdout"] == scores.split.holdout.note
    assert run.data.metrics["roc_auc"] == pytest.approx(scores.challenger["roc_auc"])
    pictures = {a.path for a in client.list_artifacts(registration.mlflow_run_id, "plots")}
    assert {"plots/roc_curve.png", "plots/confusion_matrix.png"} <= pictures
    verdict = json.loads((scores.split.plan.run_dir / "gate.json").read_text())
    assert registration.reasons == verdict["reasons"]
    assert registration.run_note() == (
        f"{PMIC.name}: registered {MODEL} v1 as challenger. " + " ".join(verdict["reasons"])
    )
    back = as_json(registration)
    assert (back["model"], back["version"], back["mlflow_run_id"]) == (
        MODEL,
        1,
        registration.mlflow_run_id,
    )
    assert Registration.from_dict(back) == registration


def test_registration_keeps_the_onnx_serving_form_the_gateway_then_serves(registration, split):
    client = MlflowClient()
    version = client.get_model_version(MODEL, str(registration.version))
    assert version.tags["serving.form"] == "onnx"
    run = client.get_run(registration.mlflow_run_id)
    assert run.data.tags["serving.form"] == "onnx"
    assert run.data.metrics["serving_onnx_max_abs_diff"] <= PMIC.model.serving_tolerance

    loaded = LoadedModel.load(MlflowLoader(MODEL, mlflow.get_tracking_uri()), registration.version)
    holdout = pd.read_parquet(split.plan.run_dir / "holdout.parquet").head(100)
    dies = holdout[split.feature_columns].to_dict("records")
    expected = predict_good_proba(loaded.model, holdout, split.feature_columns)
    assert loaded.form == "onnx"
    assert np.abs(loaded.predict_good(dies) - expected).max() <= PMIC.model.serving_tolerance


def test_an_onnx_form_past_the_tolerance_refuses_the_registration(
    registration, scores, experiment_id, home
):
    strict = PMIC.model_copy(
        update={"model": PMIC.model.model_copy(update={"serving_tolerance": 1e-12})}
    )

    with pytest.raises(ServingFormMismatch, match=r"not registered .* past the tolerance 1e-12"):
        log_and_register(scores, strict, experiment_id, home / "curated")

    versions = MlflowClient().search_model_versions(f"name='{MODEL}'")
    assert [int(v.version) for v in versions] == [registration.version]
    refused = mlflow.search_runs([experiment_id], "tags.`serving.form` = 'refused'")
    assert len(refused) == 1
    assert refused["tags.serving.reason"][0].startswith("the ONNX form's P(good) differs")


def test_the_champion_is_scored_on_the_same_holdout_and_a_failing_gate_registers_nothing(
    registration, split, experiment_id, home
):
    MlflowClient().set_registered_model_alias(MODEL, "champion", str(registration.version))
    scores = evaluate_challenger(split, PMIC)
    assert scores.champion_version == registration.version
    assert scores.champion == scores.challenger  # the same model on the same dies

    strict = PMIC.model_copy(update={"gate": Gate(metrics={"roc_auc": MetricGate(threshold=1)})})
    assert not judge(scores, strict).passed
    rejection = log_rejected(scores, strict, experiment_id, home / "curated")

    assert [int(v.version) for v in MlflowClient().search_model_versions(f"name='{MODEL}'")] == [1]
    tags = MlflowClient().get_run(rejection.mlflow_run_id).data.tags
    assert tags["gate"] == "rejected" and "roc_auc" in tags["gate_reasons"]
    (failed,) = [reason for reason in rejection.reasons if reason.endswith("FAIL")]
    assert "roc_auc" in failed and rejection.failures() == failed
    assert rejection.run_note() == f"{PMIC.name}: rejected by the gate: {failed}"
    subject, details = rejection.notification()
    assert subject == f"yield_training: {PMIC.name} challenger rejected by the gate"
    assert details == {
        "run_id": RUN_ID,
        "mlflow_run_id": rejection.mlflow_run_id,
        "reasons": rejection.reasons,
    }
    assert Rejection.from_dict(as_json(rejection)) == rejection


def test_notes_say_when_the_holdout_was_wafers_not_lots():
    wafers = Holdout(["L1"], "wafers", "1 lot(s) cannot give 1 holdout lot(s) and a training lot")
    rejection = Rejection("P", RUN_ID, "r1", "e1", ["roc_auc 0.5: FAIL", "no champion"], wafers)
    assert rejection.run_note() == (
        "P: rejected by the gate: Few lots: 1 lot(s) cannot give 1 holdout lot(s) and a "
        "training lot. roc_auc 0.5: FAIL"
    )
    registration = Registration("P", RUN_ID, "r1", "e1", ["ok"], wafers, "yield-P", 2)
    assert registration.run_note() == (
        f"P: registered yield-P v2 as challenger. {wafers.few_lots_note()}ok"
    )
    passed = Rejection("P", RUN_ID, "r1", "e1", ["a: pass", "b: pass"], wafers)
    assert passed.failures() == "a: pass; b: pass"  # no failed check named: every reason
