"""Holdout metrics of a yield model, as plain floats for MLflow, JSON and the gate.

The bad class (label 0) is the one that costs money, so precision and recall are
reported for it. The confusion matrix is ``[[bad→bad, bad→good], [good→bad, good→good]]``
(rows actual, columns predicted, label order ``[bad, good]``). Yield is the share of good
dies; predicted yield is the mean predicted probability of good.

Every skill metric comes with its no-skill baseline under ``no_skill.<metric>``: what a
model that ignores the dies scores on the same holdout (see :func:`no_skill_baselines`).
A yield model is worth something only by how far it beats these: on a lot of 79 % yield,
saying "good" for every die is 79 % accurate.

A metric that a holdout cannot define (ROC AUC with one class only, precision of the bad
class when no die is predicted bad) is NaN, and ``Evaluation.notes`` says why.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from sklearn import metrics
from sklearn.pipeline import Pipeline

from ..features import KEY_COLUMNS, LABEL, OUTCOME_COLUMNS
from .model import predict_good_proba

BAD, GOOD = 0, 1
LABELS = [BAD, GOOD]
PROBA_COLUMN = "p_good"
PREDICTED_COLUMN = "predicted"
DEFAULT_RECALL_PRECISION = 0.5
NO_SKILL_PREFIX = "no_skill."


def no_skill_key(metric: str) -> str:
    """Where a metric's no-skill baseline sits in the same metrics dict."""
    return f"{NO_SKILL_PREFIX}{metric}"


# What each baseline is, in words, for gate reasons and summaries.
NO_SKILL_MODELS = {
    "accuracy": "always predicting the majority class",
    "balanced_accuracy": "always the same answer",
    "roc_auc": "a random ranking",
    "precision_bad": "flagging dies at random",
    "recall_bad": "always predicting good",
    "recall_bad_at_precision": "a random ranking at that precision",
    "log_loss": "the holdout's yield as every die's probability",
    "wafer_yield_mae": "the training lots' yield for every wafer",
}


@dataclass
class Evaluation:
    """What a model did on a set of dies.

    ``metrics``: accuracy, balanced_accuracy, roc_auc, precision_bad, recall_bad,
    recall_bad_at_precision (the most bad dies found while at least ``recall_precision`` of
    those flagged are bad), log_loss, wafer_yield_mae (mean absolute error of the predicted
    wafer yields), dies, bad_dies, yield_actual, yield_predicted, yield_error (predicted
    minus actual), recall_precision, and ``no_skill.<metric>`` for each skill metric.
    ``per_lot`` / ``per_wafer``: one dict per lot / wafer with dies, yield_actual,
    yield_predicted. ``predictions``: the frame's key columns with the label, ``p_good``
    and ``predicted`` (for wafer maps and ROC curves; not part of :meth:`to_dict`).
    """

    metrics: dict[str, float]
    confusion_matrix: list[list[int]]
    per_lot: list[dict] = field(default_factory=list)
    per_wafer: list[dict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    predictions: pd.DataFrame | None = field(default=None, repr=False)

    def to_dict(self) -> dict:
        """JSON-ready (NaN becomes None)."""
        return {
            "metrics": {k: _json_float(v) for k, v in self.metrics.items()},
            "confusion_matrix": self.confusion_matrix,
            "confusion_labels": ["bad", "good"],
            "per_lot": [_json_row(r) for r in self.per_lot],
            "per_wafer": [_json_row(r) for r in self.per_wafer],
            "notes": list(self.notes),
        }


def evaluate(
    model: Pipeline,
    frame: pd.DataFrame,
    feature_columns: Sequence[str],
    threads: int | None = 1,
    *,
    recall_precision: float = DEFAULT_RECALL_PRECISION,
    reference_yield: float | None = None,
) -> Evaluation:
    """Score ``model`` on the dies of ``frame`` (label column ``good``). ``reference_yield``
    is the yield of the dies the model learnt from: the no-skill wafer yield prediction."""
    p_good = predict_good_proba(model, frame, feature_columns, threads=threads)
    return evaluate_probabilities(
        frame, p_good, recall_precision=recall_precision, reference_yield=reference_yield
    )


def evaluate_probabilities(
    frame: pd.DataFrame,
    p_good: np.ndarray,
    *,
    recall_precision: float = DEFAULT_RECALL_PRECISION,
    reference_yield: float | None = None,
) -> Evaluation:
    """Metrics of given probabilities of good for the dies of ``frame`` (e.g. logged by the
    gateway). A die is predicted good when ``p_good > 0.5``, as ``Pipeline.predict`` does."""
    if frame.empty:
        raise ValueError("cannot evaluate on no dies")
    y = frame[LABEL].to_numpy().astype(int)
    p_good = np.asarray(p_good, dtype=float)
    if len(p_good) != len(y):
        raise ValueError(f"{len(p_good)} probabilities for {len(y)} dies")
    predicted = (p_good > 0.5).astype(int)
    evaluation = _evaluation(frame, y, p_good, predicted, recall_precision)
    wafer_actual = np.array([w["yield_actual"] for w in evaluation.per_wafer])
    evaluation.metrics |= {
        no_skill_key(metric): value
        for metric, value in no_skill_baselines(
            y, wafer_actual, reference_yield, recall_precision
        ).items()
    }
    return evaluation


def no_skill_baselines(
    y: np.ndarray,
    wafer_yields: np.ndarray,
    reference_yield: float | None,
    recall_precision: float,
) -> dict[str, float]:
    """What a model that ignores the dies scores on these labels, metric by metric.

    It gives every die the same answer, so: accuracy is the majority class's share;
    balanced accuracy and ROC AUC are 0.5; flagged dies are bad at the holdout's bad rate,
    so precision is that rate and recall at a precision above it is 0; always "good"
    finds no bad die; log loss is that of the holdout's yield given to every die; the
    wafer yields are predicted as the training lots' yield (NaN when unknown).
    """
    n, n_bad = len(y), int((y == BAD).sum())
    bad_rate = n_bad / n
    yield_ = 1 - bad_rate
    prior = np.full(n, yield_)
    if reference_yield is None or not len(wafer_yields):
        wafer_mae = math.nan
    else:
        wafer_mae = float(np.abs(wafer_yields - reference_yield).mean())
    return {
        "accuracy": max(yield_, bad_rate),
        "balanced_accuracy": 0.5,
        "roc_auc": 0.5,
        "precision_bad": bad_rate,
        "recall_bad": 0.0,
        "recall_bad_at_precision": 1.0 if n_bad and bad_rate >= recall_precision else 0.0,
        "log_loss": float(metrics.log_loss(y, np.column_stack([1 - prior, prior]), labels=LABELS)),
        "wafer_yield_mae": wafer_mae,
    }


def recall_at_precision(y: np.ndarray, p_good: np.ndarray, precision: float) -> float:
    """The largest share of bad dies found, flagging the least likely good first, while at
    least ``precision`` of the flagged dies are bad (a point on the precision-recall curve)."""
    precisions, recalls, _ = metrics.precision_recall_curve(y == BAD, 1 - p_good)
    reached = precisions >= precision - 1e-12
    return float(recalls[reached].max()) if reached.any() else 0.0


def _evaluation(
    frame: pd.DataFrame,
    y: np.ndarray,
    p_good: np.ndarray,
    predicted: np.ndarray,
    recall_precision: float,
) -> Evaluation:
    notes: list[str] = []
    n, n_bad = len(y), int((y == BAD).sum())
    present = np.unique(y)
    cm = metrics.confusion_matrix(y, predicted, labels=LABELS)
    (bad_as_bad, bad_as_good), (good_as_bad, _good_as_good) = cm

    accuracy = float((predicted == y).mean())
    # Mean recall of the classes present (scikit-learn's definition, without its warning).
    recalls = [cm[k, k] / cm[k].sum() for k in LABELS if cm[k].sum()]
    balanced_accuracy = float(np.mean(recalls))
    if len(present) < 2:
        only = "good" if present[0] == GOOD else "bad"
        notes.append(f"roc_auc undefined: the {n} holdout dies are all {only}")
        roc_auc = math.nan
    else:
        roc_auc = float(metrics.roc_auc_score(y, p_good))
    predicted_bad = bad_as_bad + good_as_bad
    if predicted_bad:
        precision_bad = float(bad_as_bad / predicted_bad)
    else:
        notes.append("precision_bad undefined: no die was predicted bad")
        precision_bad = math.nan
    if n_bad:
        recall_bad = float(bad_as_bad / (bad_as_bad + bad_as_good))
        recall_bad_at_precision = recall_at_precision(y, p_good, recall_precision)
    else:
        notes.append("recall_bad undefined: no bad dies in the holdout")
        recall_bad = recall_bad_at_precision = math.nan
    # probabilities of [bad, good]; clipped as scikit-learn does, so a sure miss is finite
    log_loss = float(metrics.log_loss(y, np.column_stack([1 - p_good, p_good]), labels=LABELS))
    yield_actual = float(y.mean())
    yield_predicted = float(p_good.mean())
    values = {
        "accuracy": accuracy,
        "balanced_accuracy": balanced_accuracy,
        "roc_auc": roc_auc,
        "precision_bad": precision_bad,
        "recall_bad": recall_bad,
        "recall_bad_at_precision": recall_bad_at_precision,
        "recall_precision": recall_precision,
        "log_loss": log_loss,
        "dies": float(n),
        "bad_dies": float(n_bad),
        "yield_actual": yield_actual,
        "yield_predicted": yield_predicted,
        "yield_error": yield_predicted - yield_actual,
    }
    keys = [c for c in KEY_COLUMNS + OUTCOME_COLUMNS if c in frame.columns]
    predictions = (
        frame[keys]
        .reset_index(drop=True)
        .assign(**{LABEL: y, PROBA_COLUMN: p_good, PREDICTED_COLUMN: predicted})
    )
    per_wafer = _yield_by(predictions, ["lot_id", "wafer_id"])
    values["wafer_yield_mae"] = (
        float(np.mean([abs(w["yield_predicted"] - w["yield_actual"]) for w in per_wafer]))
        if per_wafer
        else math.nan
    )
    return Evaluation(
        metrics=values,
        confusion_matrix=cm.astype(int).tolist(),
        per_lot=_yield_by(predictions, ["lot_id"]),
        per_wafer=per_wafer,
        notes=notes,
        predictions=predictions,
    )


def _yield_by(predictions: pd.DataFrame, by: list[str]) -> list[dict]:
    if not set(by) <= set(predictions.columns):
        return []
    grouped = predictions.groupby(by, sort=False, dropna=False).agg(
        dies=(LABEL, "size"), yield_actual=(LABEL, "mean"), yield_predicted=(PROBA_COLUMN, "mean")
    )
    rows = []
    for key, row in grouped.iterrows():
        keys = key if isinstance(key, tuple) else (key,)
        rows.append(
            {
                **{name: (None if pd.isna(v) else v) for name, v in zip(by, keys)},
                "dies": int(row["dies"]),
                "yield_actual": float(row["yield_actual"]),
                "yield_predicted": float(row["yield_predicted"]),
            }
        )
    return rows


def _json_float(value: float) -> float | None:
    return None if isinstance(value, float) and math.isnan(value) else value


def _json_row(row: dict) -> dict:
    return {k: _json_float(v) for k, v in row.items()}
