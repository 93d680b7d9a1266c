"""MLflow glue: where runs go, what a training run records, and the model registry.

No Airflow here: the training DAG's tasks call these functions.

- Tracking URI: configuration (a given URL, else ``MLFLOW_TRACKING_URI``), with an
  embedded local default: SQLite at ``<home>/mlflow.db`` and artifacts under
  ``<home>/mlartifacts``. A tracking server URL works the same way; the server then
  decides where artifacts go.
- One experiment per product (``yield/<product>``), one registered model per product.
- Models are stored in the skops format (no pickle). skops refuses to load types it
  does not know; the types a model needs are listed at logging time, checked against
  the packages we trust, and stored in the MLmodel file, so ``mlflow.sklearn.load_model``
  and ``mlflow.pyfunc.load_model`` load it with no further argument.
- The serving form: an ONNX graph of the pipeline (``serving/model.onnx`` in the logged
  model, beside the skops file) when registration found it faithful
  (:mod:`.serving_form`); the version is still the skops sklearn model.
- Registration sets the alias ``challenger``. ``champion`` belongs to the rollout and is
  never moved here.
"""

from __future__ import annotations

import json
import math
import numbers
import os
import shutil
import subprocess
import tempfile
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import mlflow
import mlflow.sklearn
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from mlflow.models import infer_signature
from mlflow.protos.databricks_pb2 import RESOURCE_DOES_NOT_EXIST, ErrorCode

from ..names import experiment_name
from .model import trusted_types
from .serving_form import MAX_DIFF_METRIC, ONNX, ONNX_FILE, SERVING_DIR, ServingForm

CHAMPION = "champion"
CHALLENGER = "challenger"
MODEL_ARTIFACT = "model"
SKOPS = mlflow.sklearn.SERIALIZATION_FORMAT_SKOPS
LABEL_COLUMN = "label"
INPUT_EXAMPLE_ROWS = 5
PICTURES_DIR = "plots"
_SERVER_SCHEMES = {"http", "https", "databricks", "databricks-uc"}
_MAX_PARAM_CHARS = 6000  # MLflow's limit for a param value
_MAX_TAG_CHARS = 5000


# -- where runs go -------------------------------------------------------------------------


def default_tracking_uri(home: Path) -> str:
    return f"sqlite:///{Path(home).resolve() / 'mlflow.db'}"


def default_artifact_root(home: Path) -> str:
    return (Path(home).resolve() / "mlartifacts").as_uri()


def tracking_uri(home: Path, url: str | None = None) -> str:
    """The configured tracking URI: ``url``, else ``MLFLOW_TRACKING_URI``, else the default."""
    return url or os.environ.get("MLFLOW_TRACKING_URI") or default_tracking_uri(home)


def is_tracking_server(uri: str) -> bool:
    """A server stores artifacts itself; a local store (SQLite, a folder) needs a root."""
    return urlparse(uri).scheme in _SERVER_SCHEMES


def use_tracking_uri(uri: str) -> str:
    """Point this process's MLflow client at ``uri`` (creating a SQLite file's folder)."""
    if uri.startswith("sqlite:///"):
        Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(uri)
    return uri


def use_configured_store(home: Path, url: str | None = None) -> str:
    """Point this process's MLflow client at the configured store; returns its URI."""
    return use_tracking_uri(tracking_uri(home, url))


def ensure_experiment(name: str, artifact_location: str | None = None) -> str:
    """The id of experiment ``name``, created with ``artifact_location`` when missing."""
    client = MlflowClient()
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        if experiment.lifecycle_stage == "deleted":  # deleted in the UI: runs would fail
            client.restore_experiment(experiment.experiment_id)
        return experiment.experiment_id
    try:
        return client.create_experiment(name, artifact_location=artifact_location)
    except MlflowException:  # created meanwhile by a concurrent run
        experiment = client.get_experiment_by_name(name)
        if experiment is None:
            raise
        return experiment.experiment_id


def open_experiment(
    product: str, home: Path, url: str | None = None, artifact_root: str | None = None
) -> str:
    """Set the tracking URI from configuration and return the product's experiment id.

    With a local store, artifacts go to ``artifact_root`` (default ``<home>/mlartifacts``)
    under ``yield/<product>``; a tracking server chooses itself unless a root is given.
    """
    uri = use_configured_store(home, url)
    name = experiment_name(product)
    if artifact_root is None and not is_tracking_server(uri):
        artifact_root = default_artifact_root(home)
    location = f"{artifact_root.rstrip('/')}/{name}" if artifact_root else None
    return ensure_experiment(name, location)


# -- one training run ----------------------------------------------------------------------


def log_training_run(
    experiment_id: str,
    model: Any,
    train_features: Any,
    train_labels: Any,
    *,
    params: Mapping[str, Any] | None = None,
    metrics: Mapping[str, Any] | None = None,
    champion_metrics: Mapping[str, Any] | None = None,
    holdout_features: Any = None,
    holdout_labels: Any = None,
    lineage: Mapping[str, Any] | None = None,
    data_source: str | None = None,
    pictures: Mapping[str, bytes | str | Path] | None = None,
    run_name: str | None = None,
    tags: Mapping[str, str] | None = None,
    serving_form: ServingForm | None = None,
) -> str:
    """Record one training run in MLflow and return its run id.

    - ``params``: model parameters and anything else worth comparing across runs; the
      feature count, row counts and the train/holdout lots (from ``lineage``) are added.
    - ``metrics``: holdout metrics; numbers become MLflow metrics, and the whole mapping
      (confusion matrix, per-lot yields...) is kept as ``evaluation.json``.
      ``champion_metrics`` are the champion's on the same holdout, logged as ``champion_*``.
    - the fitted model in skops format, with a signature (training features ->
      ``predict_proba``) and the first rows as input example; pyfunc predicts probabilities.
    - lineage: training (and holdout) frames as MLflow datasets from ``data_source``,
      and ``lineage.json`` (``lineage`` plus feature columns and row counts). Expected
      shape: ``{"train": {"lots": [...], "files": [...]}, "holdout": {...}, ...}``.
    - tag ``git_commit``; ``pictures`` (file name -> PNG bytes or a path) under ``plots/``.
    - ``serving_form``: its tags and difference, and its ONNX graph beside the model when
      it serves.
    """
    record = _lineage_record(lineage, train_features, holdout_features)
    with mlflow.start_run(experiment_id=experiment_id, run_name=run_name) as run:
        mlflow.set_tags({"git_commit": git_revision(), **(tags or {})})
        _log_params({**_lineage_params(record), **(params or {})})
        _log_metrics(metrics or {}, champion_metrics)
        _log_datasets(train_features, train_labels, holdout_features, holdout_labels, data_source)
        mlflow.log_dict(record, "lineage.json")
        _log_pictures(pictures or {})
        logged = log_model(model, train_features)
        if serving_form is not None:
            log_serving_form(logged.model_id, serving_form)
        return run.info.run_id


def log_model(model: Any, features: Any) -> Any:
    """Log ``model`` to the active run in skops format; returns MLflow's ``ModelInfo``."""
    probabilities = model.predict_proba(features)
    return mlflow.sklearn.log_model(
        model,
        name=MODEL_ARTIFACT,
        serialization_format=SKOPS,
        skops_trusted_types=skops_trusted_types(model),
        signature=infer_signature(features, probabilities),
        input_example=features[:INPUT_EXAMPLE_ROWS],
        pyfunc_predict_fn="predict_proba",
        # Given rather than inferred: inference loads the model in a subprocess (seconds).
        pip_requirements=mlflow.sklearn.get_default_pip_requirements(include_skops=True),
    )


def log_serving_form(model_id: str, serving_form: ServingForm) -> None:
    """The form's tags and P(good) difference on the run; its ONNX graph in the logged
    model's ``serving/`` folder, only when it is the form that serves."""
    mlflow.set_tags(serving_form.tags())
    if serving_form.max_abs_diff is not None:
        mlflow.log_metric(MAX_DIFF_METRIC, serving_form.max_abs_diff)
    if serving_form.form != ONNX or serving_form.onnx is None:
        return
    with tempfile.TemporaryDirectory(prefix="yieldops-onnx-") as folder:
        path = Path(folder, ONNX_FILE)
        path.write_bytes(serving_form.onnx)
        MlflowClient().log_model_artifact(model_id, str(path), SERVING_DIR)


def skops_trusted_types(model: Any) -> list[str]:
    """The types skops must be told to trust to load ``model``; all from trusted packages."""
    import skops.io

    return trusted_types(skops.io.get_untrusted_types(data=skops.io.dumps(model)), "the model")


def git_revision() -> str:
    """The commit this code runs from (``YIELDOPS_GIT_COMMIT`` in images without .git)."""
    if commit := os.environ.get("YIELDOPS_GIT_COMMIT"):
        return commit
    try:
        done = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return done.stdout.strip() or "unknown"


def _lineage_record(lineage: Mapping[str, Any] | None, train: Any, holdout: Any) -> dict:
    record = dict(lineage or {})
    record["features"] = [str(c) for c in getattr(train, "columns", range(train.shape[1]))]
    for split, frame in (("train", train), ("holdout", holdout)):
        if frame is not None:
            record[split] = {**record.get(split, {}), "rows": len(frame)}
    return record


def _lineage_params(record: Mapping[str, Any]) -> dict[str, Any]:
    params: dict[str, Any] = {"feature_count": len(record["features"])}
    for split in ("train", "holdout"):
        part = record.get(split) or {}
        if "rows" in part:
            params[f"{split}_rows"] = part["rows"]
        if "lots" in part:
            params[f"{split}_lots"] = ",".join(map(str, part["lots"]))
    return params


def _log_params(params: Mapping[str, Any]) -> None:
    mlflow.log_params({key: str(value)[:_MAX_PARAM_CHARS] for key, value in params.items()})


def _log_metrics(metrics: Mapping[str, Any], champion: Mapping[str, Any] | None) -> None:
    scalars = _scalars(metrics)
    if champion:
        scalars |= {f"champion_{key}": value for key, value in _scalars(champion).items()}
        mlflow.log_dict(_jsonable(champion), "evaluation_champion.json")
    mlflow.log_metrics(scalars)
    mlflow.log_dict(_jsonable(metrics), "evaluation.json")


def _scalars(values: Mapping[str, Any]) -> dict[str, float]:
    return {
        key: float(value)
        for key, value in values.items()
        if isinstance(value, numbers.Real) and not isinstance(value, bool)
    }


def _jsonable(value: Any) -> Any:
    """Plain JSON (numpy scalars and arrays, NaN as null) for ``mlflow.log_dict``."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if hasattr(value, "tolist"):
        return _jsonable(value.tolist())
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _log_datasets(train, train_labels, holdout, holdout_labels, source: str | None) -> None:
    _log_dataset(train, train_labels, "train", "training", source)
    if holdout is not None:
        _log_dataset(holdout, holdout_labels, "holdout", "evaluation", source)


def _log_dataset(features, labels, split: str, context: str, source: str | None) -> None:
    import pandas as pd
    from mlflow.data.pandas_dataset import from_pandas  # mlflow.data.from_pandas, typed

    frame = pd.DataFrame(features).copy()
    targets = None
    if labels is not None:
        frame[LABEL_COLUMN] = list(labels)
        targets = LABEL_COLUMN
    with warnings.catch_warnings():  # a local path matches two equivalent source kinds
        warnings.filterwarnings("ignore", message=".*can be interpreted in multiple ways.*")
        # mlflow annotates source as str | DatasetSource, though None is its default
        dataset = from_pandas(frame, source=source, targets=targets, name=split)  # type: ignore[arg-type]
    mlflow.log_input(dataset, context=context)


def _log_pictures(pictures: Mapping[str, bytes | str | Path]) -> None:
    if not pictures:
        return
    with tempfile.TemporaryDirectory(prefix="yieldops-plots-") as folder:
        for name, picture in pictures.items():
            target = Path(folder, name)
            target.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(picture, bytes | bytearray):
                target.write_bytes(picture)
            else:
                shutil.copyfile(picture, target)
        mlflow.log_artifacts(folder, PICTURES_DIR)


def run_pictures(run_id: str) -> dict[str, bytes]:
    """The pictures a training run logged (file name -> PNG bytes), in name order."""
    with tempfile.TemporaryDirectory(prefix="yieldops-plots-") as folder:
        local = Path(
            mlflow.artifacts.download_artifacts(
                run_id=run_id, artifact_path=PICTURES_DIR, dst_path=folder
            )
        )
        return {p.name: p.read_bytes() for p in sorted(local.glob("*.png"))}


# -- registry ------------------------------------------------------------------------------


def register_challenger(
    run_id: str,
    model_name: str,
    gate_result: Mapping[str, Any],
    tags: Mapping[str, str] | None = None,
) -> int:
    """Register the run's model as a new version tagged with the gate (and ``tags``), alias
    ``challenger``. The checks' figures go in ``gate.checks`` without their reasons (those
    are in ``gate.reasons``), so the JSON stays whole within an MLflow tag's length."""
    checks = [{k: v for k, v in c.items() if k != "reason"} for c in gate_result.get("checks", [])]
    version_tags = {**gate_tags({**gate_result, "checks": checks}), **(tags or {})}
    uri = logged_model_uri(run_id)
    version = mlflow.register_model(uri, model_name, tags=version_tags).version
    MlflowClient().set_registered_model_alias(model_name, CHALLENGER, str(version))
    return int(version)


def logged_model_uri(run_id: str) -> str:
    """``models:/<model id>`` of the model logged by run ``run_id`` (the last one logged)."""
    outputs = MlflowClient().get_run(run_id).outputs
    logged = sorted(outputs.model_outputs if outputs else [], key=lambda output: output.step)
    if not logged:
        raise MlflowException(f"run {run_id} logged no model")
    return f"models:/{logged[-1].model_id}"


def gate_tags(gate_result: Mapping[str, Any], prefix: str = "gate") -> dict[str, str]:
    """Flat version tags: ``gate.passed``, ``gate.reasons``, ``gate.<metric>``..."""
    tags: dict[str, str] = {}
    for key, value in gate_result.items():
        name = f"{prefix}.{key}"
        if isinstance(value, Mapping):
            tags |= gate_tags(value, name)
        else:
            text = value if isinstance(value, str) else json.dumps(_jsonable(value))
            tags[name] = text[:_MAX_TAG_CHARS]
    return tags


def alias_version(model_name: str, alias: str) -> int | None:
    """The version ``alias`` points at, or None when the model or the alias is missing."""
    try:
        aliases = MlflowClient().get_registered_model(model_name).aliases
    except MlflowException as exc:
        if exc.error_code == ErrorCode.Name(RESOURCE_DOES_NOT_EXIST):
            return None
        raise
    return int(aliases[alias]) if alias in aliases else None


def load_version(model_name: str, version: int) -> Any:
    """The scikit-learn model of one registered version."""
    return mlflow.sklearn.load_model(f"models:/{model_name}/{version}")


def load_serving_forms(model_name: str, version: int) -> tuple[Any, bytes | None]:
    """The scikit-learn model of one registered version and its ONNX graph (None when the
    version has no serving form), from one download of the version's files."""
    with tempfile.TemporaryDirectory(prefix="yieldops-model-") as folder:
        local = mlflow.artifacts.download_artifacts(
            artifact_uri=f"models:/{model_name}/{version}", dst_path=folder
        )
        onnx = Path(local, SERVING_DIR, ONNX_FILE)
        return mlflow.sklearn.load_model(local), onnx.read_bytes() if onnx.is_file() else None


def load_alias(model_name: str, alias: str) -> Any:
    """The scikit-learn model ``models:/<name>@<alias>`` (raises when there is none)."""
    return mlflow.sklearn.load_model(f"models:/{model_name}@{alias}")


def champion(model_name: str) -> tuple[int, Any] | None:
    """``(version, model)`` of the serving champion, or None when there is none yet."""
    version = alias_version(model_name, CHAMPION)
    if version is None:
        return None
    return version, load_version(model_name, version)


# -- rollout decisions ---------------------------------------------------------------------

STATUS_TAG = "rollout.status"
CHAMPION_SINCE_TAG = "champion.since"
CHAMPION_UNTIL_TAG = "champion.until"


def promote_champion(model_name: str, version: int, tags: Mapping[str, str] | None = None):
    """Move alias ``champion`` to ``version``; returns the version it left (or None).

    Every version that served keeps ``champion.since``/``champion.until`` tags, so any
    earlier champion can be found and restored (``strategy=restore`` of model_rollout)."""
    client = MlflowClient()
    previous = alias_version(model_name, CHAMPION)
    moment = _now_iso()
    client.set_registered_model_alias(model_name, CHAMPION, str(version))
    for key, value in {STATUS_TAG: CHAMPION, CHAMPION_SINCE_TAG: moment, **(tags or {})}.items():
        client.set_model_version_tag(model_name, str(version), key, value[:_MAX_TAG_CHARS])
    if previous is not None and previous != version:
        client.set_model_version_tag(model_name, str(previous), STATUS_TAG, "retired")
        client.set_model_version_tag(model_name, str(previous), CHAMPION_UNTIL_TAG, moment)
    _drop_alias_if(model_name, CHALLENGER, version)
    return previous


def reject_version(model_name: str, version: int, reason: str, numbers: Any = None) -> None:
    """Tag ``version`` rejected with the reason and the numbers; it stops being challenger."""
    _tag_rollout_end(model_name, version, "rejected", reason, numbers)
    _drop_alias_if(model_name, CHALLENGER, version)


def abort_version(model_name: str, version: int, reason: str, numbers: Any = None) -> None:
    """Tag ``version`` aborted: its rollout stopped without the evidence to judge it (never
    ``rejected``). It stays challenger, so a later rollout may judge it."""
    _tag_rollout_end(model_name, version, "aborted", reason, numbers)


def _tag_rollout_end(model_name: str, version: int, status: str, reason: str, numbers: Any) -> None:
    client = MlflowClient()
    tags = {STATUS_TAG: status, "rollout.reason": reason, f"rollout.{status}_at": _now_iso()}
    if numbers is not None:
        tags["rollout.numbers"] = json.dumps(_jsonable(numbers))
    for key, value in tags.items():
        client.set_model_version_tag(model_name, str(version), key, value[:_MAX_TAG_CHARS])


def served_before(model_name: str, version: int) -> bool:
    """Whether ``version`` was champion at some time (a safe target for a restore)."""
    found = MlflowClient().get_model_version(model_name, str(version))
    return CHAMPION_SINCE_TAG in (found.tags or {})


def _drop_alias_if(model_name: str, alias: str, version: int) -> None:
    if alias_version(model_name, alias) == version:
        MlflowClient().delete_registered_model_alias(model_name, alias)


def _now_iso() -> str:
    from datetime import datetime, timezone

    return datetime.now(timezone.utc).isoformat(timespec="seconds")
