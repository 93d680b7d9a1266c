"""The ONNX serving form (``yieldops.training.serving_form``) of the project's real pipeline,
trained on curated lots of the synthetic fab, and the gateway scoring with it."""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient
from sklearn.dummy import DummyClassifier
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from tests.unit.test_training import curate
from threadpoolctl import threadpool_limits

from yieldops.config import product
from yieldops.features import FeatureTable, build_feature_table, feature_matrix, split_by_lot
from yieldops.serving.app import create_app
from yieldops.serving.models import LoadedModel, ModelForms
from yieldops.serving.settings import GatewaySettings
from yieldops.synth import PRODUCTS, synthesize
from yieldops.training import train
from yieldops.training.serving_form import check_serving_form

PMIC = product("YO-28NM-PMIC")
TOLERANCE = PMIC.model.serving_tolerance
TOKEN = "onnx-admin"


@pytest.fixture(scope="module", autouse=True)
def _one_openmp_thread():
    """HistGradientBoosting's OpenMP loops crawl when another process holds a core."""
    with threadpool_limits(limits=1, user_api="openmp"):
        yield


@pytest.fixture(scope="module")
def split(tmp_path_factory) -> tuple[FeatureTable, FeatureTable]:
    """Three curated PMIC lots of one wafer: two train, the newest is the holdout."""
    root = tmp_path_factory.mktemp("serving-form")
    spec = PRODUCTS[PMIC.name]
    paths = synthesize(root / "landing", lots=3, wafers_per_lot=1, seed=4, drift=0.3, product=spec)
    table = build_feature_table(curate(paths, root / "curated", PMIC.name), PMIC)
    return split_by_lot(table, PMIC.model.holdout_lots)


@pytest.fixture(scope="module")
def model(split) -> Pipeline:
    train_set, _ = split
    return train(train_set.frame, train_set.feature_columns, PMIC.model)


@pytest.fixture(scope="module")
def holdout(split) -> pd.DataFrame:
    """The holdout's feature matrix, some dies with features missing (NaN)."""
    _, holdout_set = split
    matrix = feature_matrix(holdout_set.frame, holdout_set.feature_columns)
    assert matrix.isna().any().any()
    return matrix


@pytest.fixture(scope="module")
def onnx(model, holdout) -> bytes:
    form = check_serving_form(model, holdout, TOLERANCE)
    assert form.onnx is not None
    return form.onnx


def test_the_trained_pipeline_converts_and_matches_within_the_tolerance(model, holdout):
    form = check_serving_form(model, holdout, TOLERANCE)

    assert form.form == "onnx" and not form.refused and form.reason == ""
    assert form.max_abs_diff is not None and form.max_abs_diff <= TOLERANCE
    assert form.tags() == {"serving.form": "onnx"}


def test_a_difference_past_the_tolerance_refuses(model, holdout):
    form = check_serving_form(model, holdout, 1e-12)  # below float32 arithmetic

    assert form.refused and form.form == "refused" and form.onnx is not None
    assert form.max_abs_diff is not None and form.max_abs_diff > 1e-12
    assert form.reason == (
        f"the ONNX form's P(good) differs from the pipeline's by up to {form.max_abs_diff:.3g} "
        f"on the {len(holdout)} holdout dies, past the tolerance 1e-12"
    )
    assert form.tags() == {"serving.form": "refused", "serving.reason": form.reason}


def test_a_pipeline_skl2onnx_cannot_convert_has_no_serving_form(split, holdout):
    train_set, _ = split
    features = feature_matrix(train_set.frame, train_set.feature_columns)
    dummy = Pipeline([("impute", SimpleImputer()), ("classify", DummyClassifier())])
    dummy.fit(features, train_set.y())

    form = check_serving_form(dummy, holdout, TOLERANCE)

    assert form.onnx is None and form.max_abs_diff is None and not form.refused
    assert form.form == "sklearn"
    assert form.reason.startswith("skl2onnx cannot convert it: Unable to find a shape calculator")
    assert "DummyClassifier" in form.reason and "\n" not in form.reason


def test_a_version_serves_its_onnx_form_and_the_pipeline_without_one(model, onnx, split):
    _, holdout_set = split
    records = holdout_set.frame[holdout_set.feature_columns].head(50)
    dies = [{k: v for k, v in r.items() if pd.notna(v)} for r in records.to_dict("records")]

    compiled = LoadedModel.load(lambda v: ModelForms(model, onnx), 1)
    plain = LoadedModel.load(lambda v: model, 2)
    unreadable = LoadedModel.load(lambda v: ModelForms(model, b"not onnx"), 3)

    assert (compiled.form, plain.form, unreadable.form) == ("onnx", "sklearn", "sklearn")
    expected = plain.predict_good(dies)
    assert np.abs(compiled.predict_good(dies) - expected).max() <= TOLERANCE
    assert np.array_equal(unreadable.predict_good(dies), expected)


def _forms(model: Pipeline, onnx: bytes, version: int) -> ModelForms:
    """Version 1 with its ONNX form; any other the pipeline alone."""
    return ModelForms(model, onnx if version == 1 else None)


def test_the_gateway_answers_with_the_onnx_form_and_says_so(model, onnx, split, tmp_path: Path):
    _, holdout_set = split
    rows = holdout_set.frame.head(20)
    records = [
        {"die_key": f"die-{i}", **{k: v for k, v in r.items() if pd.notna(v)}}
        for i, r in enumerate(rows[holdout_set.feature_columns].to_dict("records"))
    ]
    settings = GatewaySettings(
        routing_path=tmp_path / "routing.json",
        log_url=f"sqlite:///{tmp_path / 'predictions.db'}",
        admin_token=TOKEN,
    )
    app = create_app(settings, loader=functools.partial(_forms, model, onnx))

    with TestClient(app) as client:
        admin = {"Authorization": f"Bearer {TOKEN}"}
        assert client.put("/v1/routing", json={"champion": 1}, headers=admin).status_code == 200
        answer = client.post("/v1/predict", json=records)
        routing = client.get("/v1/routing").json()

    assert answer.status_code == 200, answer.text
    served = np.array([p["probability"] for p in answer.json()["predictions"]])
    expected = model.predict_proba(feature_matrix(rows, holdout_set.feature_columns))[:, 1]
    assert np.abs(served - expected).max() <= TOLERANCE
    assert routing["loaded"] == [1] and routing["forms"] == {"1": "onnx"}
