"""The model's serving form: the fitted pipeline compiled to ONNX, scored by ONNX Runtime.

Registration converts the pipeline with skl2onnx (scikit-learn's own converter) and scores
the holdout with both: the ONNX graph is kept beside the skops model only when its P(good)
stays within the product's ``model.serving_tolerance`` of the pipeline's. The skops model
stays the reference; the gateway serves the ONNX form when a version has one
(:mod:`yieldops.serving.models`).

ONNX trees run in float32 (thresholds, leaf sums, inputs). STDF results are 32-bit floats,
so casting the tester's values loses nothing; what remains is float32 arithmetic, a few
1e-7 of P(good) on the synthetic fab's holdouts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd

from .model import predict_good_proba

ONNX_INPUT = "features"
ONNX_PROBABILITIES = "probabilities"
ONNX_FILE = "model.onnx"
SERVING_DIR = "serving"  # beside the skops model in the logged model's artifacts
FORM_TAG, REASON_TAG = "serving.form", "serving.reason"
MAX_DIFF_METRIC = "serving_onnx_max_abs_diff"
ONNX, SKLEARN, REFUSED = "onnx", "sklearn", "refused"


@dataclass(frozen=True)
class ServingForm:
    """What registration found out about a pipeline's ONNX form."""

    onnx: bytes | None  # None: skl2onnx could not convert the pipeline (``reason`` says why)
    max_abs_diff: float | None  # P(good) on the holdout, ONNX Runtime vs the pipeline
    tolerance: float
    reason: str = ""

    @property
    def refused(self) -> bool:
        """Converted, but too far from the pipeline to serve in its place."""
        return self.max_abs_diff is not None and not self.max_abs_diff <= self.tolerance

    @property
    def form(self) -> str:
        """``onnx`` (served), ``sklearn`` (no ONNX form) or ``refused``."""
        if self.onnx is None:
            return SKLEARN
        return REFUSED if self.refused else ONNX

    def tags(self) -> dict[str, str]:
        """Tags of the run and of the version: which form serves, and why not ONNX."""
        return {FORM_TAG: self.form, **({REASON_TAG: self.reason} if self.reason else {})}


def check_serving_form(model: Any, holdout: pd.DataFrame, tolerance: float) -> ServingForm:
    """Convert ``model`` and compare its P(good) on the holdout feature matrix with the
    pipeline's; a pipeline skl2onnx cannot convert gets no ONNX form (and the reason)."""
    try:
        onnx = to_onnx_bytes(model, holdout.shape[1])
    except Exception as exc:  # skl2onnx raises many kinds for an unsupported step
        first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        return ServingForm(None, None, tolerance, f"skl2onnx cannot convert it: {first_line}")
    expected = predict_good_proba(model, holdout, list(holdout.columns))
    compiled = onnx_good_proba(onnx_session(onnx, threads=1), holdout, list(model.classes_))
    difference = float(np.max(np.abs(compiled - expected), initial=0.0))  # NaN stays NaN
    form = ServingForm(onnx, difference, tolerance)
    if not form.refused:
        return form
    reason = (
        f"the ONNX form's P(good) differs from the pipeline's by up to {difference:.3g} on "
        f"the {len(holdout)} holdout dies, past the tolerance {tolerance:g}"
    )
    return replace(form, reason=reason)


def to_onnx_bytes(model: Any, n_features: int) -> bytes:
    """The fitted pipeline as a serialized ONNX model: float32 features in (NaN where
    missing), class probabilities out as a plain array (no ZipMap)."""
    from skl2onnx import to_onnx
    from skl2onnx.common.data_types import FloatTensorType

    _register_converters()
    converted = to_onnx(
        model,
        initial_types=[(ONNX_INPUT, FloatTensorType([None, n_features]))],
        options={"zipmap": False},
    )
    return converted.SerializeToString()


def onnx_session(onnx: bytes, threads: int | None) -> Any:
    """An ONNX Runtime session on the CPU; ``threads`` intra-op threads (None: ORT's
    default, every core). With one, a call runs in the calling thread alone."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads or 0
    options.inter_op_num_threads = 1
    return onnxruntime.InferenceSession(onnx, options, providers=["CPUExecutionProvider"])


def onnx_good_proba(session: Any, features: pd.DataFrame, classes: Sequence[Any]) -> np.ndarray:
    """P(good) of each row of the feature matrix (float64 columns in the model's order);
    0 when the model never saw a good die."""
    if 1 not in classes:
        return np.zeros(len(features))
    matrix = features.to_numpy(dtype=np.float32)
    (proba,) = session.run([ONNX_PROBABILITIES], {ONNX_INPUT: matrix})
    return np.asarray(proba[:, list(classes).index(1)], dtype="float64")


_registered = False


def _register_converters() -> None:
    """skl2onnx 1.20 writes HistGradientBoosting leaves' missing-value flags as Python
    booleans, which protobuf 7.34+ refuses in an ONNX integer list; its own converter runs
    here with those flags handed over as ints."""
    global _registered
    if _registered:
        return
    from skl2onnx import update_registered_converter
    from skl2onnx.common.shape_calculator import calculate_linear_classifier_output_shapes
    from skl2onnx.operator_converters.random_forest import (
        convert_sklearn_random_forest_classifier,
    )
    from sklearn.ensemble import HistGradientBoostingClassifier

    def convert(scope: Any, operator: Any, container: Any) -> None:
        convert_sklearn_random_forest_classifier(scope, operator, _IntFlags(container))

    update_registered_converter(
        HistGradientBoostingClassifier,
        "SklearnHistGradientBoostingClassifier",
        calculate_linear_classifier_output_shapes,
        convert,
        options={  # skl2onnx's own for this converter
            "zipmap": [True, False, "columns"],
            "raw_scores": [True, False],
            "output_class_labels": [False, True],
            "nocl": [True, False],
        },
    )
    _registered = True


class _IntFlags:
    """An skl2onnx container whose nodes get booleans in list attributes as 0/1."""

    def __init__(self, container: Any) -> None:
        self._container = container

    def __getattr__(self, name: str) -> Any:
        return getattr(self._container, name)

    def add_node(self, *args: Any, **attributes: Any) -> Any:
        fixed = {
            name: [int(v) if isinstance(v, bool) else v for v in value]
            if isinstance(value, list)
            else value
            for name, value in attributes.items()
        }
        return self._container.add_node(*args, **fixed)
