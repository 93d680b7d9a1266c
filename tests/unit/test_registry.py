"""MLflow glue against a real local store (SQLite + artifact folder in a temp dir)."""

from __future__ import annotations

import io
import json
import re
import struct
import tempfile
from pathlib import Path

import mlflow
import mlflow.pyfunc
import mlflow.tracking._tracking_service.utils as tracking_state
import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient
from mlflow.artifacts import download_artifacts
from mlflow.models import Model
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import confusion_matrix
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer
from threadpoolctl import threadpool_limits

from yieldops.names import model_name
from yieldops.training import plots, registry

PRODUCT = "TESTCHIP"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
GATE = {
    "passed": True,
    "reasons": [],
    "metrics": {"accuracy": 0.91, "roc_auc": 0.87},
    "thresholds": {"accuracy": 0.85, "roc_auc": 0.8},
}


def _dies(n: int, seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    """Synthetic dies: two parametric tests (one with gaps), position, site; label good."""
    rng = np.random.default_rng(seed)
    x = rng.integers(-12, 13, n).astype(float)
    y = rng.integers(-12, 13, n).astype(float)
    features = pd.DataFrame(
        {
            "t1000": rng.normal(1.0, 0.1, n),
            "t1001": rng.normal(0.0, 1.0, n),
            "x": x,
            "y": y,
            "radius": np.hypot(x, y),
            "site": rng.integers(0, 4, n).astype(float),
        }
    )
    logit = 3 - 12 * np.abs(features.t1000 - 1.0) - 0.15 * features.radius
    good = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    features.loc[rng.random(n) < 0.05, "t1001"] = np.nan
    return features, good


def _pipeline(seed: int = 0) -> Pipeline:
    classifier = HistGradientBoostingClassifier(max_iter=30, random_state=seed)
    return Pipeline([("impute", SimpleImputer(strategy="median")), ("model", classifier)])


@pytest.fixture(scope="module", autouse=True)
def _one_openmp_thread():
    """HistGradientBoosting's OpenMP loops crawl (100x) when another process holds a core."""
    with threadpool_limits(limits=1, user_api="openmp"):
        yield


@pytest.fixture(scope="module")
def store():
    """A fresh local MLflow store; the previous tracking URI is restored afterwards."""
    previous = tracking_state._tracking_uri
    with (
        tempfile.TemporaryDirectory(prefix="yieldops-mlflow-") as home,
        pytest.MonkeyPatch.context() as patch,
    ):
        patch.delenv("MLFLOW_TRACKING_URI", raising=False)
        patch.delenv("YIELDOPS_GIT_COMMIT", raising=False)
        experiment_id = registry.open_experiment(PRODUCT, Path(home))
        try:
            yield Path(home), experiment_id
        finally:
            mlflow.end_run()
            mlflow.set_tracking_uri(previous)


@pytest.fixture(scope="module")
def data():
    train, train_good = _dies(1500, seed=1)
    holdout, holdout_good = _dies(500, seed=2)
    return train, train_good, holdout, holdout_good


@pytest.fixture(scope="module")
def trained(data):
    train, train_good, _, _ = data
    return _pipeline().fit(train, train_good)


@pytest.fixture(scope="module")
def run_id(store, data, trained):
    _, experiment_id = store
    train, train_good, holdout, holdout_good = data
    scores = trained.predict_proba(holdout)[:, 1]
    matrix = confusion_matrix(holdout_good, trained.predict(holdout))
    pictures = {
        "roc.png": plots.roc_curve_png(holdout_good, scores),
        "wafer_maps/L2_W1_fail_probability.png": plots.wafer_map_png(
            holdout.x, holdout.y, 1 - scores, "L2 W1", kind="probability"
        ),
    }
    lineage = {
        "source": "curated/product=TESTCHIP",
        "train": {"lots": ["L0", "L1"], "files": [{"sha256": "ab" * 32, "rows": 1500}]},
        "holdout": {"lots": ["L2"], "files": [{"sha256": "cd" * 32, "rows": 500}]},
    }
    return registry.log_training_run(
        experiment_id,
        trained,
        train,
        train_good,
        params={"max_iter": 30, "estimator": "HistGradientBoostingClassifier"},
        metrics={"accuracy": 0.91, "roc_auc": 0.87, "confusion_matrix": matrix},
        champion_metrics={"accuracy": 0.88},
        holdout_features=holdout,
        holdout_labels=holdout_good,
        lineage=lineage,
        data_source=str(store[0] / "curated"),
        pictures=pictures,
    )


def test_tracking_uri_comes_from_configuration(monkeypatch, tmp_path):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert registry.tracking_uri(tmp_path) == f"sqlite:///{tmp_path.resolve()}/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow:5000")
    assert registry.tracking_uri(tmp_path) == "http://mlflow:5000"
    assert registry.tracking_uri(tmp_path, "https://given") == "https://given"
    assert registry.is_tracking_server("http://mlflow:5000")
    assert not registry.is_tracking_server(registry.default_tracking_uri(tmp_path))
    assert registry.default_artifact_root(tmp_path) == (tmp_path / "mlartifacts").as_uri()


def test_experiment_per_product_with_local_artifacts(store):
    home, experiment_id = store
    experiment = MlflowClient().get_experiment(experiment_id)
    assert experiment.name == "yield/TESTCHIP"
    assert experiment.artifact_location == (home / "mlartifacts/yield/TESTCHIP").as_uri()
    assert mlflow.get_tracking_uri() == f"sqlite:///{home.resolve()}/mlflow.db"
    assert registry.open_experiment(PRODUCT, home) == experiment_id  # found, not created


def test_deleted_experiment_is_restored(store):
    home, _ = store
    other = registry.open_experiment("OTHER", home)
    MlflowClient().delete_experiment(other)
    assert registry.open_experiment("OTHER", home) == other
    assert MlflowClient().get_experiment(other).lifecycle_stage == "active"


def test_trusted_types_are_what_the_model_needs(trained):
    trusted = registry.skops_trusted_types(trained)
    assert "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor" in trusted
    assert all(name.startswith(("sklearn.", "numpy.")) for name in trusted)


def test_types_from_other_packages_are_refused():
    model = FunctionTransformer(func=json.dumps)
    with pytest.raises(ValueError, match=r"untrusted packages: \['json.dumps'\]"):
        registry.skops_trusted_types(model)


def test_run_records_params_metrics_lineage_and_git(store, run_id):
    run = MlflowClient().get_run(run_id)
    params, metrics, tags = run.data.params, run.data.metrics, run.data.tags
    assert params["max_iter"] == "30"
    assert params["feature_count"] == "6"
    assert (params["train_lots"], params["holdout_lots"]) == ("L0,L1", "L2")
    assert (params["train_rows"], params["holdout_rows"]) == ("1500", "500")
    assert metrics == {"accuracy": 0.91, "roc_auc": 0.87, "champion_accuracy": 0.88}
    assert re.fullmatch(r"[0-9a-f]{40}|unknown", tags["git_commit"])

    inputs = {d.tags[0].value: d.dataset for d in run.inputs.dataset_inputs}
    assert set(inputs) == {"training", "evaluation"}
    assert json.loads(inputs["training"].source) == {"uri": str(store[0] / "curated")}
    assert json.loads(inputs["training"].profile)["num_rows"] == 1500

    folder = Path(download_artifacts(run_id=run_id, dst_path=str(store[0] / "download")))
    lineage = json.loads((folder / "lineage.json").read_text())
    assert lineage["train"]["files"][0]["sha256"] == "ab" * 32
    assert (lineage["train"]["rows"], lineage["holdout"]["rows"]) == (1500, 500)
    assert lineage["features"] == ["t1000", "t1001", "x", "y", "radius", "site"]
    evaluation = json.loads((folder / "evaluation.json").read_text())
    assert np.asarray(evaluation["confusion_matrix"]).shape == (2, 2)
    for picture in ("roc.png", "wafer_maps/L2_W1_fail_probability.png"):
        assert (folder / "plots" / picture).read_bytes().startswith(PNG_MAGIC)


def test_model_is_stored_as_skops_with_signature_and_example(store, run_id):
    folder = Path(download_artifacts(registry.logged_model_uri(run_id)))
    assert (folder / "model.skops").is_file()
    assert not list(folder.glob("*.pkl"))
    meta = Model.load(folder)
    flavor = meta.flavors["sklearn"]
    assert (flavor["serialization_format"], flavor["pickled_model"]) == ("skops", "model.skops")
    assert (
        "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor"
        in (flavor["skops_trusted_types"])
    )
    assert meta.signature.inputs.input_names() == ["t1000", "t1001", "x", "y", "radius", "site"]
    assert meta.signature.outputs.inputs[0].shape == (-1, 2)  # predict_proba
    example = meta.load_input_example(str(folder))
    assert len(example) == registry.INPUT_EXAMPLE_ROWS
    assert "skops==" in (folder / "requirements.txt").read_text()


def test_register_sets_challenger_and_never_champion(store, data, trained, run_id):
    name = model_name(PRODUCT)
    client = MlflowClient()
    train, _, holdout, _ = data

    assert registry.champion(name) is None  # no such model yet
    assert registry.register_challenger(run_id, name, GATE) == 1
    assert registry.alias_version(name, "challenger") == 1
    version = client.get_model_version(name, "1")
    assert version.run_id == run_id
    assert version.tags["gate.passed"] == "true"
    assert version.tags["gate.reasons"] == "[]"
    assert version.tags["gate.metrics.accuracy"] == "0.91"
    assert version.tags["gate.thresholds.roc_auc"] == "0.8"

    reloaded = registry.load_alias(name, "challenger")
    assert np.array_equal(reloaded.predict_proba(holdout), trained.predict_proba(holdout))
    assert np.array_equal(reloaded.predict(holdout), trained.predict(holdout))
    served = mlflow.pyfunc.load_model(f"models:/{name}@challenger")
    assert np.array_equal(np.asarray(served.predict(holdout)), trained.predict_proba(holdout))

    second = LogisticRegression(max_iter=500)
    second_model = Pipeline([("impute", SimpleImputer()), ("model", second)])
    second_model.fit(train, data[1])
    second_run = registry.log_training_run(store[1], second_model, train, data[1])
    assert registry.register_challenger(second_run, name, {"passed": True}) == 2
    assert registry.alias_version(name, "challenger") == 2
    assert registry.alias_version(name, "champion") is None
    assert registry.champion(name) is None
    assert set(client.get_registered_model(name).aliases) == {"challenger"}

    client.set_registered_model_alias(name, "champion", "1")  # what the rollout does
    version, model = registry.champion(name)
    assert version == 1
    assert np.array_equal(model.predict_proba(holdout), trained.predict_proba(holdout))
    assert registry.alias_version(name, "challenger") == 2


def test_champion_of_unknown_model_is_none(store):
    assert registry.champion("yield-no-such-product") is None
    assert registry.alias_version("yield-no-such-product", "challenger") is None


def test_git_revision_from_environment(monkeypatch):
    monkeypatch.setenv("YIELDOPS_GIT_COMMIT", "0123abc")
    assert registry.git_revision() == "0123abc"


# -- pictures --------------------------------------------------------------------------------


def _png_size(png: bytes) -> tuple[int, int]:
    assert png.startswith(PNG_MAGIC)
    assert png[12:16] == b"IHDR"
    return struct.unpack(">II", png[16:24])


def _colours(png: bytes) -> set[tuple[int, int, int]]:
    from matplotlib.image import imread

    pixels = (imread(io.BytesIO(png), format="png")[..., :3] * 255).round().astype(int)
    return set(map(tuple, pixels.reshape(-1, 3).tolist()))


def _rgb(colour: str) -> tuple[int, int, int]:
    return tuple(int(colour[i : i + 2], 16) for i in (1, 3, 5))


def _wafer(radius: int = 10):
    xs, ys = np.meshgrid(np.arange(-radius, radius + 1), np.arange(-radius, radius + 1))
    inside = np.hypot(xs, ys) <= radius
    return xs[inside], ys[inside]


def test_wafer_map_of_bins_colours_each_fail_bin():
    x, y = _wafer()
    bins = np.ones(len(x), dtype=int)
    bins[::7], bins[::11], bins[::13] = 5, 7, 9
    png = plots.wafer_map_png(x, y, bins, "L1 W1 actual bins", kind="bins", good_bins=[1])
    width, height = _png_size(png)
    assert 300 <= width <= 1200 and 300 <= height <= 1200
    assert len(png) < 200_000
    colours = _colours(png)
    expected = [plots.GOOD_COLOUR, *plots.FAIL_COLOURS[:3]]
    assert {_rgb(c) for c in expected} <= colours


def test_wafer_map_of_fail_probability():
    x, y = _wafer()
    probability = np.clip(np.hypot(x, y) / 10, 0, 1)
    png = plots.wafer_map_png(x, y, probability, "L1 W1 predicted", kind="probability")
    width, height = _png_size(png)
    assert 300 <= width <= 1200 and 300 <= height <= 1200
    assert len(_colours(png)) > 50  # a colour scale, not a few flat colours


def test_wafer_map_refuses_bad_input():
    with pytest.raises(ValueError, match="length"):
        plots.wafer_map_png([0, 1], [0], [1, 1], "bad", kind="bins")
    with pytest.raises(ValueError, match="kind"):
        plots.wafer_map_png([0], [0], [1], "bad", kind="heat")


def test_roc_and_confusion_matrix_pngs():
    rng = np.random.default_rng(3)
    truth = rng.integers(0, 2, 300)
    scores = np.clip(truth * 0.4 + rng.random(300) * 0.6, 0, 1)
    for png in (
        plots.roc_curve_png(truth, scores),
        plots.roc_curve_png(np.ones(10, dtype=int), np.linspace(0, 1, 10)),  # one class
        plots.confusion_matrix_png([[40, 10], [5, 245]], ["fail", "good"]),
        plots.confusion_matrix_png([[0, 0], [0, 3]], ["fail", "good"]),  # empty row
    ):
        width, height = _png_size(png)
        assert 300 <= width <= 1200 and 300 <= height <= 1200
        assert 5_000 < len(png) < 200_000
    with pytest.raises(ValueError, match="shape"):
        plots.confusion_matrix_png([[1, 2]], ["fail", "good"])
