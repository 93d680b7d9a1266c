"""Holdout metrics of a yield model, as plain floats for MLflow, JSON and the gate.

The bad class (label 0) is the one that costs money, so precision and recall are
reported for it. The confusion matrix is ``[[bad→bad, bad→good], [good→bad, good→good]]``
(rows actual, columns predicted, label order ``[bad, good]``). Yield is the share of good
dies; predicted yield is the mean predicted probability of good.

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


@dataclass
class Evaluation:
    """What a model did on a set of dies.

    ``metrics``: accuracy, balanced_accuracy, roc_auc, precision_bad, recall_bad, log_loss,
    dies, bad_dies, yield_actual, yield_predicted, yield_error (predicted minus actual).
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
) -> Evaluation:
    """Score ``model`` on the dies of ``frame`` (label column ``good``)."""
    p_good = predict_good_proba(model, frame, feature_columns, threads=threads)
    return evaluate_probabilities(frame, p_good)


def evaluate_probabilities(frame: pd.DataFrame, p_good: np.ndarray) -> Evaluation:
    """Metrics of given probabilities of good for the dies of ``frame`` (e.g. logged by the
    gateway). A die is predicted good when ``p_good > 0.5``, as ``Pipeline.predict`` does."""
    if frame.empty:
        raise ValueError("cannot evaluate on no dies")
    y = frame[LABEL].to_numpy().astype(int)
    p_good = np.asarray(p_good, dtype=float)
    if len(p_good) != len(y):
        raise ValueError(f"{len(p_good)} probabilities for {len(y)} dies")
    predicted = (p_good > 0.5).astype(int)
    return _evaluation(frame, y, p_good, predicted)


def _evaluation(
    frame: pd.DataFrame, y: np.ndarray, p_good: np.ndarray, predicted: np.ndarray
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
    else:
        notes.append("recall_bad undefined: no bad dies in the holdout")
        recall_bad = math.nan
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
    return Evaluation(
        metrics=values,
        confusion_matrix=cm.astype(int).tolist(),
        per_lot=_yield_by(predictions, ["lot_id"]),
        per_wafer=_yield_by(predictions, ["lot_id", "wafer_id"]),
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
