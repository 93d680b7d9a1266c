"""One training run of a product, step by step: the work of the ``yield_training`` tasks.

plan_training, build_features (or Skipped: not enough data), train_challenger,
evaluate_challenger, judge (the gate), then log_and_register (with the model's ONNX
serving form, checked against it) or log_rejected.

Steps hand each other small frozen records (``to_dict``/``from_dict``: plain JSON, e.g.
for XCom). The bulky parts stay in the run's folder ``<home>/training/<product>/<run>/``:
the feature frames, the fitted model, the evaluations and the gate's verdict. The steps
that read or write MLflow expect it pointed at the configured store already
(``registry.open_experiment``). No Airflow here.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Self, get_type_hints

import numpy as np
import pandas as pd

from ..config import ProductConfig
from ..features import (
    NotEnoughData,
    Split,
    build_feature_table,
    feature_matrix,
    split_for_training,
)
from ..names import model_name
from .evaluation import evaluate, no_skill_key
from .gate import GateResult, gate
from .model import feature_columns_of, load_model_file, predict_good_proba, save_model_file, train
from .serving_form import ServingForm, check_serving_form

log = logging.getLogger(__name__)

# The run folder's files.
TRAIN_FRAME, HOLDOUT_FRAME, LINEAGE = "train.parquet", "holdout.parquet", "lineage.json"
MODEL_FILE, EVALUATION, GATE_VERDICT = "challenger.skops", "evaluation.json", "gate.json"
MAX_TAG_CHARS = 5000  # MLflow's limit for a tag value


@dataclass(frozen=True)
class Record:
    """A step's result as plain JSON and back; nested records and paths are rebuilt from
    the field types (no pickles)."""

    def to_dict(self) -> dict:
        return asdict(self, dict_factory=_with_paths_as_text)

    @classmethod
    def from_dict(cls, data: dict) -> Self:
        names = [f.name for f in fields(cls)]
        if missing := [name for name in names if name not in data]:
            raise ValueError(f"not a {cls.__name__}: {missing} missing from {sorted(data)}")
        types = get_type_hints(cls)
        return cls(**{name: _typed(types[name], data[name]) for name in names})


def _with_paths_as_text(items: list[tuple[str, Any]]) -> dict:
    return {key: str(value) if isinstance(value, Path) else value for key, value in items}


def _typed(kind: Any, value: Any) -> Any:
    if isinstance(kind, type) and issubclass(kind, Record) and value is not None:
        return kind.from_dict(value)
    return Path(value) if kind is Path else value


@dataclass(frozen=True)
class TrainingPlan(Record):
    """What one run trains: the product, where its files go, how many lots to hold out
    (None: the product YAML's), and the other products whose curated data changed at the
    same time (each gets its own run)."""

    product: str
    run_id: str
    run_dir: Path
    holdout_lots: int | None = None
    other_products: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Holdout(Record):
    """The held-out lots and how they were chosen: ``by`` lots, or by wafers or parts when
    there are too few lots (``note`` says so, with the numbers)."""

    lots: list[str]
    by: str
    note: str

    def few_lots_note(self) -> str:
        """How the holdout was chosen, for a run note, when it was not the newest lot(s)."""
        return "" if self.by == "lots" else f"Few lots: {self.note}. "


@dataclass(frozen=True)
class FeatureSplit(Record):
    """The feature columns and the lots trained on and held out (the frames are in the
    run folder)."""

    plan: TrainingPlan
    feature_columns: list[str]
    train_lots: list[str]
    holdout: Holdout


@dataclass(frozen=True)
class Skipped(Record):
    """Too little data to train and judge a model: the run ends skipped, not rejected."""

    plan: TrainingPlan
    reason: str
    skipped: bool = True  # what the JSON says it is (see ``features_of``)

    def run_note(self) -> str:
        return f"{self.plan.product}: skipped: {self.reason}"

    def notification(self) -> tuple[str, dict]:
        """Subject and details of the message that tells people."""
        subject = f"yield_training: {self.plan.product} skipped: not enough data"
        return subject, {"run_id": self.plan.run_id, "reason": self.reason}


@dataclass(frozen=True)
class HoldoutScores(Record):
    """The challenger's holdout metrics, and the champion's on the same holdout (None: no
    champion yet). NaN is None; the whole evaluations are in the run folder."""

    split: FeatureSplit
    challenger: dict[str, Any]
    champion: dict[str, Any] | None = None
    champion_version: int | None = None


@dataclass(frozen=True)
class LoggedRun(Record):
    """A training run logged in MLflow, with the gate's reasons (failures first)."""

    product: str
    run_id: str
    mlflow_run_id: str
    experiment_id: str
    reasons: list[str]
    holdout: Holdout


@dataclass(frozen=True)
class Registration(LoggedRun):
    """The run's model registered as ``version`` of ``model``, alias ``challenger``."""

    model: str
    version: int

    def run_note(self) -> str:
        return (
            f"{self.product}: registered {self.model} v{self.version} as challenger. "
            + self.holdout.few_lots_note()
            + " ".join(self.reasons)
        )


@dataclass(frozen=True)
class Rejection(LoggedRun):
    """The gate said no: the run is logged, nothing is registered."""

    def failures(self) -> str:
        """The failed checks (every reason when none says FAIL)."""
        failed = [reason for reason in self.reasons if "FAIL" in reason.upper()]
        return "; ".join(failed or self.reasons)

    def run_note(self) -> str:
        return (
            f"{self.product}: rejected by the gate: {self.holdout.few_lots_note()}{self.failures()}"
        )

    def notification(self) -> tuple[str, dict]:
        """Subject and details of the message that tells people."""
        subject = f"yield_training: {self.product} challenger rejected by the gate"
        details = {"run_id": self.run_id, "mlflow_run_id": self.mlflow_run_id}
        return subject, {**details, "reasons": self.reasons}


# -- the steps -----------------------------------------------------------------------------


def plan_training(
    changed: list[str], requested: str, run_id: str, home: Path, holdout_lots: int | None = None
) -> TrainingPlan:
    """Train the first product (by name) whose curated data changed, else ``requested``
    (a run by hand); the run folder is made."""
    ordered = sorted(changed)
    product = ordered[0] if ordered else requested
    log.info("training %s (curated data changed for: %s)", product, ordered or "none; by hand")
    run_dir = run_folder(home, product, run_id)
    run_dir.mkdir(parents=True, exist_ok=True)
    return TrainingPlan(product, run_id, run_dir, holdout_lots, ordered[1:])


def run_folder(home: Path, product: str, run_id: str) -> Path:
    """``<home>/training/<product>/<run id, as a folder name>``."""
    return Path(home) / "training" / product / re.sub(r"[^\w.-]+", "_", run_id)


def build_features(
    plan: TrainingPlan, curated_dir: Path, config: ProductConfig
) -> FeatureSplit | Skipped:
    """The feature table split by time into training and holdout dies (frames and lineage
    written to the run folder); Skipped, with the numbers, when the data cannot give both."""
    table = build_feature_table(curated_dir, config)
    holdout_lots = plan.holdout_lots or config.model.holdout_lots
    try:
        split = split_for_training(table, holdout_lots, config.model.train_lots)
    except NotEnoughData as exc:
        log.warning("%s", exc)
        return Skipped(plan, str(exc))
    _write_split(plan.run_dir, split)
    log.info(
        "%d dies, %d features: %s; training %d dies, holdout %d dies",
        table.n_dies,
        len(table.feature_columns),
        split.note,
        split.train.n_dies,
        split.holdout.n_dies,
    )
    holdout = Holdout(split.holdout.lots, split.by, split.note)
    return FeatureSplit(plan, table.feature_columns, split.train.lots, holdout)


def _write_split(folder: Path, split: Split) -> None:
    split.train.frame.to_parquet(folder / TRAIN_FRAME)
    split.holdout.frame.to_parquet(folder / HOLDOUT_FRAME)
    lineage = {
        name: {"lots": part.lots, "files": part.lineage()}
        for name, part in (("train", split.train), ("holdout", split.holdout))
    }
    _write_json(folder / LINEAGE, lineage)


def features_of(data: dict) -> FeatureSplit | Skipped:
    """What ``build_features`` returned, read back from its JSON."""
    return Skipped.from_dict(data) if data.get("skipped") else FeatureSplit.from_dict(data)


def train_challenger(split: FeatureSplit, config: ProductConfig) -> Path:
    """Fit the product's pipeline on the training dies; the model file in the run folder."""
    train_frame, _ = _frames(split.plan.run_dir)
    model = train(train_frame, split.feature_columns, config.model)
    path = split.plan.run_dir / MODEL_FILE
    save_model_file(model, path)
    return path


def evaluate_challenger(split: FeatureSplit, config: ProductConfig) -> HoldoutScores:
    """Challenger and champion scored on the same holdout, each metric beside its no-skill
    baseline; both evaluations written to the run folder."""
    from .registry import champion  # MLflow: imported by the steps that use it only

    folder = split.plan.run_dir
    train_frame, holdout = _frames(folder)
    challenger = _score(_challenger(folder), split.feature_columns, train_frame, holdout, config)
    current = champion(model_name(split.plan.product))
    champion_metrics, champion_version = None, None
    if current is not None:
        champion_version, model = current
        scored = _score(model, feature_columns_of(model), train_frame, holdout, config)
        champion_metrics = scored["metrics"]
    log.info("challenger: %s", _headline(challenger["metrics"]))
    log.info("champion v%s: %s", champion_version, _headline(champion_metrics or {}) or "none")
    _write_json(folder / EVALUATION, {"challenger": challenger, "champion": champion_metrics})
    return HoldoutScores(split, challenger["metrics"], champion_metrics, champion_version)


def _score(model, columns: list[str], train_frame, holdout, config: ProductConfig) -> dict:
    """One model's holdout evaluation as JSON; the no-skill wafer yields are the training
    lots' yield (what a yield engineer expects without a model)."""
    return evaluate(
        model,
        holdout,
        columns,
        recall_precision=config.gate.recall_precision,
        reference_yield=float(train_frame["good"].mean()),
    ).to_dict()


def _headline(metrics: dict) -> str:
    return ", ".join(
        f"{k} {metrics[k]:.4f} (no skill {metrics.get(no_skill_key(k)) or 0:.4f})"
        for k in ("accuracy", "balanced_accuracy", "roc_auc", "recall_bad_at_precision")
        if metrics.get(k) is not None
    )


def judge(scores: HoldoutScores, config: ProductConfig) -> GateResult:
    """The gate's verdict on the challenger (written to the run folder for the next step)."""
    result = gate(scores.challenger, scores.champion, config.gate)
    _write_json(scores.split.plan.run_dir / GATE_VERDICT, result.to_dict())
    for reason in result.reasons:
        log.info("gate: %s", reason)
    return result


def log_and_register(
    scores: HoldoutScores, config: ProductConfig, experiment_id: str, curated_dir: Path
) -> Registration:
    """Log the run, register its model as a new version with alias ``challenger`` (never
    ``champion``), with its ONNX serving form when it converts; ServingFormMismatch (the
    run logged, nothing registered) when the ONNX form differs past the tolerance."""
    from .registry import register_challenger

    verdict = _verdict(scores)
    form = _serving_form(scores, config)
    mlflow_run = _log_run(scores, config, experiment_id, curated_dir, {"gate": "passed"}, form)
    name = model_name(scores.split.plan.product)
    if form.refused:
        raise ServingFormMismatch(f"{name} not registered (MLflow run {mlflow_run}): {form.reason}")
    if form.onnx is None:
        log.warning(
            "%s: no ONNX serving form, the gateway will serve sklearn: %s", name, form.reason
        )
    version = register_challenger(mlflow_run, name, verdict.to_dict(), form.tags())
    log.info(
        "registered %s version %s as challenger (MLflow run %s), serving form %s",
        name,
        version,
        mlflow_run,
        form.form,
    )
    logged = _logged(scores, verdict, mlflow_run, experiment_id)
    return Registration(**logged, model=name, version=version)


class ServingFormMismatch(RuntimeError):
    """The ONNX serving form does not give the pipeline's probabilities: not registered."""


def _serving_form(scores: HoldoutScores, config: ProductConfig) -> ServingForm:
    """The challenger compiled to ONNX and compared with it on the holdout."""
    columns = scores.split.feature_columns
    _, holdout = _frames(scores.split.plan.run_dir)
    model = _challenger(scores.split.plan.run_dir)
    holdout_features = feature_matrix(holdout, columns)
    form = check_serving_form(model, holdout_features, config.model.serving_tolerance)
    if form.max_abs_diff is not None:
        log.info(
            "ONNX serving form: P(good) within %.3g of the pipeline's on the holdout "
            "(tolerance %g)",
            form.max_abs_diff,
            form.tolerance,
        )
    return form


def log_rejected(
    scores: HoldoutScores, config: ProductConfig, experiment_id: str, curated_dir: Path
) -> Rejection:
    """Log the run as rejected with the gate's reasons; register nothing."""
    verdict = _verdict(scores)
    reasons = "; ".join(verdict.reasons)[:MAX_TAG_CHARS]
    tags = {"gate": "rejected", "gate_reasons": reasons}
    mlflow_run = _log_run(scores, config, experiment_id, curated_dir, tags)
    rejection = Rejection(**_logged(scores, verdict, mlflow_run, experiment_id))
    log.warning("challenger rejected, nothing registered: %s", rejection.failures())
    return rejection


def _verdict(scores: HoldoutScores) -> GateResult:
    return GateResult.from_dict(_read_json(scores.split.plan.run_dir / GATE_VERDICT))


def _logged(
    scores: HoldoutScores, verdict: GateResult, mlflow_run: str, experiment_id: str
) -> dict[str, Any]:
    """The fields of a ``LoggedRun`` of this training."""
    plan = scores.split.plan
    return {
        "product": plan.product,
        "run_id": plan.run_id,
        "mlflow_run_id": mlflow_run,
        "experiment_id": experiment_id,
        "reasons": verdict.reasons,
        "holdout": scores.split.holdout,
    }


def _log_run(
    scores: HoldoutScores,
    config: ProductConfig,
    experiment_id: str,
    curated_dir: Path,
    tags: dict[str, str],
    serving_form: ServingForm | None = None,
) -> str:
    """The MLflow run of this training, whatever the gate said; its id."""
    from .registry import log_training_run

    plan, columns = scores.split.plan, scores.split.feature_columns
    train_frame, holdout = _frames(plan.run_dir)
    model = _challenger(plan.run_dir)
    probability = np.asarray(predict_good_proba(model, holdout, columns))
    evaluation = _read_json(plan.run_dir / EVALUATION)["challenger"]
    return log_training_run(
        experiment_id,
        model,
        feature_matrix(train_frame, columns),
        train_frame["good"].to_numpy(),
        params={"estimator": config.model.estimator, **config.model.params},
        metrics=scores.challenger,
        champion_metrics=scores.champion,
        holdout_features=feature_matrix(holdout, columns),
        holdout_labels=holdout["good"].to_numpy(),
        lineage=_read_json(plan.run_dir / LINEAGE),
        data_source=f"{curated_dir}/product={plan.product}",
        pictures=holdout_pictures(holdout, probability, evaluation, config),
        run_name=f"{plan.product} {plan.run_id}",
        tags={"airflow_run_id": plan.run_id, "holdout": scores.split.holdout.note, **tags},
        serving_form=serving_form,
    )


def holdout_pictures(
    holdout: pd.DataFrame, good_probability: np.ndarray, evaluation: dict, config: ProductConfig
) -> dict[str, bytes]:
    """Per holdout wafer the actual bins and the predicted fail probability; ROC; confusion."""
    from .plots import confusion_matrix_png, roc_curve_png, wafer_map_png

    pictures: dict[str, bytes] = {}
    for wafer, dies in holdout.groupby("wafer_id", sort=True):
        rows = dies.index.to_numpy()
        x, y = dies["x"].to_numpy(), dies["y"].to_numpy()
        pictures[f"wafer_{wafer}_actual.png"] = wafer_map_png(
            x,
            y,
            dies["hard_bin"].to_numpy(),
            f"{wafer}: hard bin",
            kind="bins",
            good_bins=config.bins.good,
        )
        pictures[f"wafer_{wafer}_predicted_fail.png"] = wafer_map_png(
            x,
            y,
            1 - good_probability[rows],
            f"{wafer}: predicted fail probability",
            kind="probability",
        )
    labels = holdout["good"].to_numpy()
    pictures["roc_curve.png"] = roc_curve_png(1 - labels, 1 - good_probability)
    pictures["confusion_matrix.png"] = confusion_matrix_png(
        evaluation["confusion_matrix"], evaluation["confusion_labels"]
    )
    return pictures


# -- the run folder ------------------------------------------------------------------------


def _frames(folder: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The training and holdout dies ``build_features`` wrote."""
    return pd.read_parquet(folder / TRAIN_FRAME), pd.read_parquet(folder / HOLDOUT_FRAME)


def _challenger(folder: Path):
    """The model ``train_challenger`` wrote, loaded only when every type is known-safe."""
    return load_model_file(folder / MODEL_FILE)


def _write_json(path: Path, value: Any) -> None:
    path.write_text(json.dumps(value, indent=2))


def _read_json(path: Path) -> Any:
    return json.loads(path.read_text())
