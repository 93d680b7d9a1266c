"""The yield model: a plain scikit-learn Pipeline (median imputation, then a classifier).

Nothing custom is pickled inside: MLflow's sklearn flavour, skops and the prediction
gateway take it as it is. The estimator class and its arguments come from the product
YAML (``model``), allow-listed to scikit-learn classifiers.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, is_classifier
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from threadpoolctl import threadpool_limits

from ..config import ESTIMATOR_MODULES, ModelSpec
from ..features import LABEL, feature_matrix
from ..quiet import quiet_skops

# Before skops is first imported: every task that saves or loads a model imports this
# module (yieldops.training imports it), and skops' noise starts at its import.
quiet_skops()

IMPUTER_STEP, ESTIMATOR_STEP = "impute", "classify"
# Types found in a saved model are trusted for loading only when they come from these packages.
TRUSTED_TYPE_PREFIXES = ("sklearn.", "numpy.", "scipy.", "yieldops.")


def estimator_class(path: str) -> type:
    """The classifier class named by a dotted path from the allow-listed modules."""
    module_name, _, class_name = path.rpartition(".")
    if module_name not in ESTIMATOR_MODULES:
        raise ValueError(f"estimator {path!r} is not from {', '.join(ESTIMATOR_MODULES)}")
    cls = getattr(importlib.import_module(module_name), class_name, None)
    if not inspect.isclass(cls) or not issubclass(cls, BaseEstimator):
        raise ValueError(f"estimator {path!r} is not a scikit-learn estimator class")
    return cls


def make_pipeline(spec: ModelSpec) -> Pipeline:
    """An unfitted Pipeline: SimpleImputer(median), then ``spec.estimator(**spec.params)``,
    seeded with ``spec.random_state`` when the estimator takes a seed and the YAML gives none."""
    cls = estimator_class(spec.estimator)
    params = dict(spec.params)
    if "random_state" in inspect.signature(cls).parameters:
        params.setdefault("random_state", spec.random_state)
    try:
        estimator = cls(**params)
    except TypeError as exc:
        raise ValueError(f"model.params for {spec.estimator}: {exc}") from exc
    if not is_classifier(estimator):
        raise ValueError(f"estimator {spec.estimator!r} is not a classifier")
    if not hasattr(estimator, "predict_proba"):
        raise ValueError(
            f"{spec.estimator} with params {spec.params} gives no predict_proba "
            "(the gate needs probabilities, e.g. SVC needs probability: true)"
        )
    return Pipeline(
        [
            # keep_empty_features: a test never measured in training keeps its column.
            (IMPUTER_STEP, SimpleImputer(strategy="median", keep_empty_features=True)),
            (ESTIMATOR_STEP, estimator),
        ]
    )


def train(frame: pd.DataFrame, feature_columns: Sequence[str], spec: ModelSpec) -> Pipeline:
    """Fit the pipeline on these dies (label column ``good``: 1 good, 0 bad)."""
    y = frame[LABEL].to_numpy()
    classes = np.unique(y)
    if len(classes) < 2:
        raise ValueError(
            f"cannot train on {len(frame)} dies of one class only ({classes.tolist()}): "
            "add lots with both good and bad dies"
        )
    pipeline = make_pipeline(spec)
    with threads_limited(spec.threads):
        pipeline.fit(feature_matrix(frame, feature_columns), y)
    return pipeline


@contextmanager
def threads_limited(threads: int | None) -> Iterator[None]:
    """Cap OpenMP and BLAS threads (None: leave them be). On a shared 2-core machine an
    unlimited HistGradientBoosting fit took 8-64 s where one thread took 0.2 s."""
    if threads is None:
        yield
        return
    with threadpool_limits(limits=threads):
        yield


def feature_columns_of(model: Pipeline) -> list[str]:
    """The columns a fitted pipeline expects, in order (from its training DataFrame)."""
    return [str(c) for c in model.feature_names_in_]


def predict_good_proba(
    model: Pipeline,
    frame: pd.DataFrame,
    feature_columns: Sequence[str],
    threads: int | None = 1,
) -> np.ndarray:
    """Probability that each die is good (class 1); 0 when the model never saw a good die."""
    with threads_limited(threads):
        proba = model.predict_proba(feature_matrix(frame, feature_columns))
    classes = list(model.classes_)
    return proba[:, classes.index(1)] if 1 in classes else np.zeros(len(frame))


def save_model_file(model: Pipeline, path: Path) -> None:
    """The model in skops format (no pickle), e.g. handed from one task to the next."""
    import skops.io

    skops.io.dump(model, path)


def load_model_file(path: Path) -> Pipeline:
    """A model written by :func:`save_model_file`, loaded only when every type it holds
    comes from a trusted package."""
    import skops.io

    needed = trusted_types(skops.io.get_untrusted_types(file=path), str(path))
    return skops.io.load(path, trusted=needed)


def trusted_types(type_names: Iterable[str], holder: str) -> list[str]:
    """``type_names`` when all are from :data:`TRUSTED_TYPE_PREFIXES`; else a ValueError
    naming ``holder`` (a file or "the model") and the foreign types."""
    names = list(type_names)
    foreign = [name for name in names if not name.startswith(TRUSTED_TYPE_PREFIXES)]
    if foreign:
        raise ValueError(
            f"{holder} holds types from untrusted packages: {foreign} "
            f"(trusted: {', '.join(TRUSTED_TYPE_PREFIXES)})"
        )
    return names
