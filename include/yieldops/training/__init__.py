"""Training the yield model: pipeline, holdout evaluation and the registration gate.

>>> table = build_feature_table(curated_dir, config)  # doctest: +SKIP
>>> train_set, holdout = split_by_lot(table, config.model.holdout_lots)  # doctest: +SKIP
>>> model = train(train_set.frame, table.feature_columns, config.model)  # doctest: +SKIP
>>> result = evaluate(model, holdout.frame, table.feature_columns)  # doctest: +SKIP
>>> verdict = gate(result.metrics, champion_metrics_or_none, config.gate)  # doctest: +SKIP

MLflow logging and registration (``registry``) and the steps of a training run that use
them (``flow``) live beside these modules and are imported from there: importing this
package does not import MLflow.
"""

from .evaluation import Evaluation, evaluate, evaluate_probabilities
from .gate import GateResult, gate
from .model import feature_columns_of, make_pipeline, predict_good_proba, train

__all__ = [
    "Evaluation",
    "GateResult",
    "evaluate",
    "evaluate_probabilities",
    "feature_columns_of",
    "gate",
    "make_pipeline",
    "predict_good_proba",
    "train",
]
