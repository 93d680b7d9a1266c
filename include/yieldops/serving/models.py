"""Loaded model versions and how a die's features become a probability."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ..features import feature_matrix
from ..settings import _home
from ..training.model import feature_columns_of
from ..training.serving_form import ONNX, SKLEARN, onnx_good_proba, onnx_session

log = logging.getLogger(__name__)

# version -> fitted model, or its ModelForms. It must pickle (a module-level function, a
# partial of one, a small dataclass): the mirror worker process gets a copy and loads
# versions itself.
Loader = Callable[[int], Any]
MAX_ERROR_CHARS = 1000


@dataclass(frozen=True)
class ModelForms:
    """A registered version: the scikit-learn pipeline (the reference) and, when
    registration compiled one, its ONNX serving form."""

    pipeline: Any
    onnx: bytes | None = None


@dataclass(frozen=True)
class LoadedModel:
    """A version ready to score: the pipeline, and the ONNX Runtime session that scores in
    its place when the version has an ONNX form (None: the pipeline scores)."""

    version: int
    model: Any
    columns: tuple[str, ...]
    session: Any = None

    @classmethod
    def load(cls, loader: Loader, version: int, threads: int | None = 1) -> LoadedModel:
        """The version from ``loader``; its ONNX form gets one session with ``threads``
        intra-op threads (one: each call runs in its caller's thread)."""
        found = loader(version)
        forms = found if isinstance(found, ModelForms) else ModelForms(found)
        columns = tuple(feature_columns_of(forms.pipeline))
        session = None
        if forms.onnx is not None:
            try:
                session = onnx_session(forms.onnx, threads)
            except Exception:  # the pipeline is the reference: it serves instead
                log.exception("version %s: ONNX Runtime refused its ONNX form", version)
        return cls(version, forms.pipeline, columns, session)

    @property
    def form(self) -> str:
        """Which form answers: ``onnx`` or ``sklearn``."""
        return SKLEARN if self.session is None else ONNX

    def predict_good(self, features: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """P(good) of each record (missing features are NaN: the model imputes them)."""
        frame = pd.DataFrame.from_records(list(features))
        matrix = feature_matrix(frame, self.columns)
        classes = list(self.model.classes_)
        if self.session is not None:
            return onnx_good_proba(self.session, matrix, classes)
        if 1 not in classes:
            return np.zeros(len(frame))
        proba = self.model.predict_proba(matrix)
        return np.asarray(proba[:, classes.index(1)], dtype="float64")


@dataclass(frozen=True)
class Scored:
    """One model call: P(good) of each die, or the error (text) when the call failed."""

    proba: np.ndarray | None
    error: str | None
    seconds: float

    def split(self, sizes: Sequence[int]) -> list[Scored]:
        """The call's result as the results of the requests it scored together, in order."""
        if self.proba is None:
            return [self] * len(sizes)
        parts = np.split(self.proba, np.cumsum(sizes)[:-1])
        return [Scored(part, None, self.seconds) for part in parts]


def score(model: LoadedModel, features: Sequence[Mapping[str, Any]]) -> Scored:
    """Call the model, timed; a model failure is returned as text, never raised."""
    started = time.perf_counter()
    try:
        proba, error = model.predict_good(features), None
    except Exception as exc:
        proba, error = None, f"{type(exc).__name__}: {exc}"[:MAX_ERROR_CHARS]
    return Scored(proba, error, time.perf_counter() - started)


class OpenMPThreads:
    """Caps the OpenMP threads of each thread that calls a model, once per thread: OpenMP
    counts threads per calling thread, so a cap set in one thread misses the others (with
    every core, HistGradientBoosting took 300 ms for one die). Applied just before a call,
    when the model's OpenMP runtime is loaded: threadpoolctl only reaches loaded libraries."""

    def __init__(self, threads: int | None) -> None:
        self.threads = threads
        self._capped = threading.local()

    def apply(self) -> None:
        if self.threads is None or getattr(self._capped, "done", False):
            return
        from threadpoolctl import threadpool_limits

        threadpool_limits(limits=self.threads, user_api="openmp")
        self._capped.done = True


@dataclass(frozen=True)
class MlflowLoader:
    """Versions of ``model_name`` from the MLflow registry: ``tracking_uri``, else the
    configured store (the one the training DAG registers into). A plain value, so it
    pickles: the mirror worker process loads the versions it scores the same way."""

    model_name: str
    tracking_uri: str = ""

    def __post_init__(self) -> None:
        if not self.model_name:
            raise ValueError("the gateway needs a model name to load from MLflow")

    def __call__(self, version: int) -> ModelForms:
        from ..training import registry  # lazily: mlflow is heavy

        registry.use_configured_store(_home(), self.tracking_uri or None)
        return ModelForms(*registry.load_serving_forms(self.model_name, version))


def mlflow_champion(model_name: str, tracking_uri: str = "") -> int | None:
    """The version the MLflow alias ``champion`` points at, if any."""
    from ..training import registry

    registry.use_configured_store(_home(), tracking_uri or None)
    return registry.alias_version(model_name, registry.CHAMPION)
