"""Loaded model versions and how a die's features become a probability."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ..features import feature_matrix
from ..training.model import feature_columns_of

Loader = Callable[[int], Any]


@dataclass(frozen=True)
class LoadedModel:
    version: int
    model: Any
    columns: tuple[str, ...]

    @classmethod
    def load(cls, loader: Loader, version: int) -> LoadedModel:
        model = loader(version)
        return cls(version, model, tuple(feature_columns_of(model)))

    def predict_good(self, features: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """P(good) of each record (missing features are NaN: the pipeline imputes them)."""
        frame = pd.DataFrame.from_records(list(features))
        proba = self.model.predict_proba(feature_matrix(frame, self.columns))
        classes = list(self.model.classes_)
        if 1 not in classes:
            return np.zeros(len(frame))
        return np.asarray(proba[:, classes.index(1)], dtype="float64")


def mlflow_loader(model_name: str, tracking_uri: str = "") -> Loader:
    """Versions of ``model_name`` from the MLflow registry (imported lazily: mlflow is heavy)."""
    if not model_name:
        raise ValueError("the gateway needs a model name to load from MLflow")

    def load(version: int) -> Any:
        from ..training import registry

        _use_tracking_uri(tracking_uri)
        return registry.load_version(model_name, version)

    return load


def mlflow_champion(model_name: str, tracking_uri: str = "") -> int | None:
    """The version the MLflow alias ``champion`` points at, if any."""
    from ..training import registry

    _use_tracking_uri(tracking_uri)
    return registry.alias_version(model_name, registry.CHAMPION)


def _use_tracking_uri(url: str) -> None:
    """The given URL, else ``MLFLOW_TRACKING_URI``, else the local store under home:
    the same store the training DAG registers into."""
    from ..settings import _home
    from ..training import registry

    registry.use_tracking_uri(registry.tracking_uri(_home(), url or None))
