"""Training, holdout evaluation and the gate on real curated data from the synthetic fab.

Train on three lots, hold out the fourth (the newest), as the training DAG does.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn import metrics as skm
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline

from yieldops.config import ConfigError, Gate, MetricGate, ModelSpec, load_product, product
from yieldops.curated.dataset import write_file_tables
from yieldops.features import FeatureTable, build_feature_table, file_features, split_by_lot
from yieldops.stdf import read_tables
from yieldops.synth import PRODUCTS, synthesize
from yieldops.training import (
    Evaluation,
    GateResult,
    evaluate,
    feature_columns_of,
    gate,
    make_pipeline,
    predict_good_proba,
    train,
)

PMIC = product("YO-28NM-PMIC")
ADC = product("YO-7NM-ADC")


def curate(paths: list[Path], root: Path, name: str) -> Path:
    for path in paths:
        tables = read_tables(path)
        lot_id = tables["lots"]["lot_id"][0].as_py()
        sha = hashlib.sha256(path.read_bytes()).hexdigest()
        write_file_tables(tables, root, name, lot_id, sha)
    return root


@pytest.fixture(scope="module")
def curated(tmp_path_factory) -> Path:
    """Four PMIC lots of one wafer (drift 0.3: the process moves a little lot by lot)."""
    root = tmp_path_factory.mktemp("training")
    paths = synthesize(
        root / "landing", lots=4, wafers_per_lot=1, seed=0, drift=0.3, product=PRODUCTS[PMIC.name]
    )
    return curate(paths, root / "curated", PMIC.name)


@pytest.fixture(scope="module")
def split(curated) -> tuple[FeatureTable, FeatureTable]:
    table = build_feature_table(curated, PMIC)
    return split_by_lot(table, PMIC.model.holdout_lots)


@pytest.fixture(scope="module")
def model(split) -> Pipeline:
    train_set, _ = split
    return train(train_set.frame, train_set.feature_columns, PMIC.model)


@pytest.fixture(scope="module")
def evaluation(model, split) -> Evaluation:
    train_set, holdout = split
    return evaluate(
        model, holdout.frame, holdout.feature_columns, reference_yield=train_set.y().mean()
    )


@pytest.fixture(scope="module")
def shuffled(split) -> Evaluation:
    """A model trained on labels shuffled across dies: it has learnt nothing."""
    train_set, holdout = split
    frame = train_set.frame.copy()
    frame["good"] = np.random.default_rng(1).permutation(frame["good"].to_numpy())
    noise = train(frame, train_set.feature_columns, PMIC.model)
    return evaluate(noise, holdout.frame, holdout.feature_columns)


def test_the_pipeline_is_plain_scikit_learn() -> None:
    pipeline = make_pipeline(PMIC.model)
    assert [type(step) for _, step in pipeline.steps] == [
        SimpleImputer,
        HistGradientBoostingClassifier,
    ]
    assert pipeline.steps[0][1].strategy == "median"
    estimator = pipeline.steps[-1][1]
    assert estimator.random_state == 0
    assert estimator.max_depth == PMIC.model.params["max_depth"]


def test_estimator_comes_from_the_allow_list(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    base = "name: X\nbins: {good: [1], declared: [1]}\nwafer: {radius_dies: 5}\n"
    for estimator in ("os.system", "sklearn.cluster.KMeans", "evil.sklearn.ensemble.X"):
        path.write_text(base + f"model: {{estimator: {estimator}}}\n")
        with pytest.raises(ConfigError, match="is not allowed"):
            load_product(path)
    with pytest.raises(ValueError, match="not a classifier"):
        make_pipeline(ModelSpec(estimator="sklearn.linear_model.LinearRegression"))
    with pytest.raises(ValueError, match="no predict_proba"):
        make_pipeline(ModelSpec(estimator="sklearn.svm.SVC"))
    with pytest.raises(ValueError, match=r"model\.params"):
        make_pipeline(ModelSpec(params={"n_trees": 3}))
    with pytest.raises(ValueError, match="not a scikit-learn estimator"):
        make_pipeline(ModelSpec(estimator="sklearn.ensemble.NoSuchForest"))
    forest = make_pipeline(
        ModelSpec(estimator="sklearn.ensemble.RandomForestClassifier", params={"n_estimators": 5})
    )
    assert forest.steps[-1][1].random_state == 0


def test_training_is_deterministic_and_keeps_its_columns(model, split) -> None:
    train_set, holdout = split
    again = train(train_set.frame, train_set.feature_columns, PMIC.model)
    first = predict_good_proba(model, holdout.frame, holdout.feature_columns)
    assert np.array_equal(first, predict_good_proba(again, holdout.frame, holdout.feature_columns))
    assert feature_columns_of(model) == train_set.feature_columns


def test_holdout_metrics_clear_the_default_gate(evaluation, split) -> None:
    _, holdout = split
    m = evaluation.metrics
    print("holdout", holdout.lots, json.dumps(evaluation.to_dict()))
    assert m["dies"] == len(holdout.frame) and m["bad_dies"] > 50

    result = gate(m, None, Gate())
    assert result.passed, result.summary()
    assert gate(m, None, PMIC.gate).passed
    assert result.reasons[-1] == "no champion: relative checks skipped"
    # Better than the models without skill on every metric.
    for metric in ("accuracy", "balanced_accuracy", "roc_auc", "recall_bad_at_precision"):
        assert m[metric] > m[f"no_skill.{metric}"], metric
    assert m["log_loss"] < m["no_skill.log_loss"]
    assert abs(m["yield_error"]) < 0.03


def test_metrics_are_the_standard_ones(evaluation, split) -> None:
    _, holdout = split
    p = evaluation.predictions
    y, p_good, predicted = holdout.y(), p["p_good"].to_numpy(), p["predicted"].to_numpy()
    m = evaluation.metrics
    assert m["accuracy"] == pytest.approx(skm.accuracy_score(y, predicted))
    assert m["balanced_accuracy"] == pytest.approx(skm.balanced_accuracy_score(y, predicted))
    assert m["roc_auc"] == pytest.approx(skm.roc_auc_score(y, p_good))
    assert m["precision_bad"] == pytest.approx(skm.precision_score(y, predicted, pos_label=0))
    assert m["recall_bad"] == pytest.approx(skm.recall_score(y, predicted, pos_label=0))
    assert m["log_loss"] == pytest.approx(skm.log_loss(y, p_good))
    precision, recall, _ = skm.precision_recall_curve(y, 1 - p_good, pos_label=0)
    assert m["recall_bad_at_precision"] == pytest.approx(recall[precision >= 0.5].max())
    assert m["recall_precision"] == 0.5
    assert evaluation.confusion_matrix == skm.confusion_matrix(y, predicted).tolist()
    assert all(isinstance(v, float) for v in m.values())
    (lot,) = evaluation.per_lot
    (wafer,) = evaluation.per_wafer
    assert lot["lot_id"] == holdout.lots[0] and wafer["wafer_id"].startswith(holdout.lots[0])
    assert lot["yield_actual"] == pytest.approx(y.mean())
    assert wafer["yield_predicted"] == pytest.approx(p_good.mean())
    assert m["wafer_yield_mae"] == pytest.approx(abs(p_good.mean() - y.mean()))
    assert {"x", "y", "wafer_id", "hard_bin", "good"} <= set(p.columns)


def test_no_skill_baselines_are_those_of_models_that_ignore_the_dies(evaluation, split) -> None:
    train_set, holdout = split
    y, m = holdout.y(), evaluation.metrics
    always_good = np.ones(len(y))
    assert m["no_skill.accuracy"] == pytest.approx(skm.accuracy_score(y, always_good))
    assert m["no_skill.balanced_accuracy"] == skm.balanced_accuracy_score(y, always_good) == 0.5
    assert m["no_skill.roc_auc"] == skm.roc_auc_score(y, always_good) == 0.5
    assert m["no_skill.log_loss"] == pytest.approx(skm.log_loss(y, np.full(len(y), y.mean())))
    assert m["no_skill.wafer_yield_mae"] == pytest.approx(abs(train_set.y().mean() - y.mean()))
    # (1 - yield) of the holdout is below the precision asked for: flagging at random
    # never reaches it, so a model without skill finds no bad die at that precision.
    assert 1 - y.mean() < 0.5 and m["no_skill.recall_bad_at_precision"] == 0.0


@pytest.fixture(scope="module")
def drifted(tmp_path_factory) -> tuple[FeatureTable, FeatureTable]:
    """The demo's story on the ADC: three lots of a steady process, then a lot whose
    process drifted (the holdout)."""
    root = tmp_path_factory.mktemp("drifted")
    landing, spec = root / "landing", PRODUCTS[ADC.name]
    paths = synthesize(landing, lots=3, wafers_per_lot=1, seed=0, drift=0.3, product=spec)
    paths += synthesize(
        landing, lots=1, wafers_per_lot=1, seed=0, drift=0.6, product=spec, first_lot=3
    )
    table = build_feature_table(curate(paths, root / "curated", ADC.name), ADC)
    return split_by_lot(table, 1)


def judged(spec: ModelSpec, train_set: FeatureTable, holdout: FeatureTable) -> GateResult:
    """Train with ``spec``, score on the holdout and judge with the ADC's own gate."""
    model = train(train_set.frame, train_set.feature_columns, spec)
    scored = evaluate(
        model, holdout.frame, holdout.feature_columns, reference_yield=train_set.y().mean()
    )
    return gate(scored.metrics, None, ADC.gate)


def failures(result: GateResult) -> dict[tuple[str, str], str]:
    return {(c["kind"], c["metric"]): c["reason"] for c in result.checks if not c["passed"]}


def test_the_gate_rejects_models_without_skill_naming_the_baseline(drifted) -> None:
    train_set, holdout = drifted
    assert judged(ADC.model, train_set, holdout).passed

    always_good = ModelSpec(
        estimator="sklearn.dummy.DummyClassifier", params={"strategy": "constant", "constant": 1}
    )
    result = judged(always_good, train_set, holdout)
    assert not result.passed
    failed = failures(result)
    majority = f"{1 - (holdout.y() == 0).mean():.4f}"
    assert failed[("lift", "accuracy")] == (
        f"accuracy {majority} is 0.0000 better than no skill {majority}: always predicting "
        "the majority class; needs 0.0020 (lift): FAIL"
    )
    assert "no skill 0.5000: a random ranking" in failed[("absolute", "roc_auc")]
    assert {("absolute", "balanced_accuracy"), ("absolute", "recall_bad_at_precision")} <= set(
        failed
    )

    frame = train_set.frame.copy()
    frame["good"] = np.random.default_rng(1).permutation(frame["good"].to_numpy())
    shuffled = train(frame, train_set.feature_columns, ADC.model)
    scored = evaluate(shuffled, holdout.frame, holdout.feature_columns)
    result = gate(scored.metrics, None, ADC.gate)
    assert not result.passed
    assert {("lift", "accuracy"), ("absolute", "roc_auc")} <= set(failures(result))
    assert result.reasons[0].endswith("FAIL") and "no skill" in result.reasons[0]


def test_relative_gate_compares_with_the_champion_on_the_same_holdout(evaluation, shuffled) -> None:
    # The real model against a useless champion: better, passes.
    assert gate(evaluation.metrics, shuffled.metrics, PMIC.gate).passed
    # The useless model against the real champion: far worse, fails, whatever its accuracy.
    result = gate(shuffled.metrics, evaluation.metrics, PMIC.gate)
    assert not result.passed
    relative = {c["metric"]: c for c in result.checks if c["kind"] == "relative"}
    assert not relative["roc_auc"]["passed"]
    assert relative["roc_auc"]["baseline"] == evaluation.metrics["roc_auc"]


@pytest.mark.parametrize(
    ("challenger_auc", "passed"),
    [(0.835, True), (0.830, True), (0.8299, False), (0.815, False)],
)
def test_relative_tolerance_boundary(challenger_auc: float, passed: bool) -> None:
    champion = {"accuracy": 0.92, "roc_auc": 0.84}
    challenger = {"accuracy": 0.92, "roc_auc": challenger_auc}
    config = Gate(metrics={m: MetricGate(tolerance=0.01) for m in ("accuracy", "roc_auc")})
    result = gate(challenger, champion, config)
    assert result.passed is passed, result.summary()
    (check,) = [c for c in result.checks if c["kind"] == "relative" and c["metric"] == "roc_auc"]
    assert check["threshold"] == pytest.approx(0.83)
    assert check["baseline"] == 0.84 and check["tolerance"] == 0.01
    if not passed:
        assert "roc_auc" in result.reasons[0] and "champion 0.8400" in result.reasons[0]


def test_lower_is_better_metrics_gate_the_other_way() -> None:
    config = Gate(metrics={"log_loss": MetricGate(threshold=0.3, tolerance=0.02)})
    assert gate({"log_loss": 0.25}, {"log_loss": 0.24}, config).passed
    assert not gate({"log_loss": 0.27}, {"log_loss": 0.24}, config).passed
    assert not gate({"log_loss": 0.31}, None, config).passed
    with pytest.raises(ValueError, match="cannot gate on"):
        Gate(metrics={"f1": MetricGate(threshold=0.5)})


def test_one_class_holdout_is_reported_not_crashed(model, split) -> None:
    _, holdout = split
    all_good = holdout.frame[holdout.frame["good"] == 1]

    result = evaluate(model, all_good, holdout.feature_columns)

    m = result.metrics
    assert math.isnan(m["roc_auc"]) and math.isnan(m["recall_bad"])
    assert any("roc_auc undefined" in note for note in result.notes)
    assert result.confusion_matrix[0] == [0, 0]
    assert m["accuracy"] == pytest.approx(result.confusion_matrix[1][1] / len(all_good))
    assert math.isfinite(m["log_loss"])
    as_json = json.dumps(result.to_dict(), allow_nan=False)
    assert '"roc_auc": null' in as_json
    verdict = gate(m, None, PMIC.gate)
    assert not verdict.passed
    assert any("roc_auc is undefined" in reason for reason in verdict.reasons)
    json.dumps(verdict.to_dict(), allow_nan=False)
    # a champion without the metric cannot hold a challenger back on it
    champion = {"accuracy": m["accuracy"], "roc_auc": math.nan}
    relative = [c for c in gate(m, champion, PMIC.gate).checks if c["kind"] == "relative"]
    assert all(c["passed"] for c in relative)


def test_training_needs_both_classes(split) -> None:
    train_set, _ = split
    with pytest.raises(ValueError, match="one class only"):
        train(train_set.frame[train_set.frame["good"] == 1], train_set.feature_columns, PMIC.model)


def test_new_file_scores_like_the_holdout(model, split, curated) -> None:
    """The serving path: one decoded file, the model's own columns, the same probabilities."""
    _, holdout = split
    (sha,) = holdout.frame["file"].unique()
    (path,) = (curated.parent / "landing").glob(f"*{holdout.lots[0]}*")
    rows = file_features(read_tables(path), feature_columns_of(model), PMIC, file=sha)
    assert hashlib.sha256(path.read_bytes()).hexdigest() == sha
    p_file = predict_good_proba(model, rows, feature_columns_of(model))
    p_table = predict_good_proba(model, holdout.frame, holdout.feature_columns)
    assert np.array_equal(p_file, p_table)
    assert isinstance(rows, pd.DataFrame) and len(rows) == len(holdout.frame)
