"""The task bodies of ``yield_training``: Airflow context in, yieldops library calls out.

Tasks hand each other a small dict (XCom); the bulky parts (feature frames,
the fitted model, evaluations) live in a per-run folder under
``<home>/training/<product>/<run>/``.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

from yieldops.names import challenger_asset_name, product_of_curated_asset
from yieldops_airflow.links import training_run_links
from yieldops_airflow.notes import set_run_note
from yieldops_airflow.runtime import runtime_settings

log = logging.getLogger(__name__)
CHALLENGER_ALIAS = "model-challenger"


def plan(params: dict, triggering_asset_events, run_id: str) -> dict:
    """The product of this run: the one whose curated data changed, else the param."""
    changed = sorted(
        filter(None, (product_of_curated_asset(a.name) for a in triggering_asset_events or {}))
    )
    product = changed[0] if changed else params["product"]
    holdout = params.get("holdout_lots")
    log.info("training %s (curated data changed for: %s)", product, changed or "none; by hand")
    return {
        "product": product,
        "others": [{"product": p} for p in changed[1:]],
        "holdout_lots": holdout,
        "run_id": run_id,
        "run_dir": str(_run_dir(product, run_id)),
    }


def _run_dir(product: str, run_id: str) -> Path:
    folder = runtime_settings().home / "training" / product / re.sub(r"[^\w.-]+", "_", run_id)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _config(run: dict):
    from yieldops.config import product

    return product(run["product"])


def build_features(run: dict) -> dict:
    """The feature table, split into training and holdout dies (written to the run folder);
    ``not_enough_data`` says why instead when no model can be trained and judged."""
    from yieldops.features import NotEnoughData, build_feature_table, split_for_training

    settings, config = runtime_settings(), _config(run)
    table = build_feature_table(settings.curated_dir, config)
    holdout_lots = run["holdout_lots"] or config.model.holdout_lots
    try:
        split = split_for_training(table, holdout_lots, config.model.train_lots)
    except NotEnoughData as exc:
        log.warning("%s", exc)
        return {**run, "not_enough_data": str(exc)}
    folder = Path(run["run_dir"])
    split.train.frame.to_parquet(folder / "train.parquet")
    split.holdout.frame.to_parquet(folder / "holdout.parquet")
    lineage = {
        name: {"lots": part.lots, "files": part.lineage()}
        for name, part in (("train", split.train), ("holdout", split.holdout))
    }
    (folder / "lineage.json").write_text(json.dumps(lineage, indent=2))
    log.info(
        "%d dies, %d features: %s; training %d dies, holdout %d dies",
        table.n_dies,
        len(table.feature_columns),
        split.note,
        split.train.n_dies,
        split.holdout.n_dies,
    )
    return {
        **run,
        "feature_columns": table.feature_columns,
        "train_lots": split.train.lots,
        "holdout_lot_ids": split.holdout.lots,
        "holdout": {"by": split.by, "note": split.note},
    }


def enough_data(run: dict) -> str:
    return "not_enough_data" if run.get("not_enough_data") else "train"


def not_enough_data(run: dict) -> dict:
    """No model this time: said as such (not as a gate rejection) in the note and the
    notification."""
    from yieldops_airflow.notifiers import YieldopsNotifier

    reason = run["not_enough_data"]
    set_run_note("yield_training", run["run_id"], f"{run['product']}: skipped: {reason}")
    YieldopsNotifier().send(
        f"yield_training: {run['product']} skipped: not enough data",
        {"run_id": run["run_id"], "reason": reason},
    )
    return {"skipped": True, "reason": reason}


def _frames(run: dict):
    import pandas as pd

    folder = Path(run["run_dir"])
    return pd.read_parquet(folder / "train.parquet"), pd.read_parquet(folder / "holdout.parquet")


def train(run: dict) -> dict:
    from yieldops.training.model import save_model_file
    from yieldops.training.model import train as fit

    train_frame, _ = _frames(run)
    model = fit(train_frame, run["feature_columns"], _config(run).model)
    save_model_file(model, Path(run["run_dir"]) / "challenger.skops")
    return run


def _challenger(run: dict):
    """The model this run's train task wrote, loaded only when every type is known-safe."""
    from yieldops.training.model import load_model_file

    return load_model_file(Path(run["run_dir"]) / "challenger.skops")


def _open_experiment(product: str) -> str:
    from yieldops.training.registry import open_experiment

    settings = runtime_settings()
    return open_experiment(product, settings.home, settings.mlflow_tracking_uri or None)


def evaluate(run: dict) -> dict:
    """Challenger and champion scored on the same holdout (metrics JSON-ready: NaN is None),
    each metric beside its no-skill baseline."""
    from yieldops.names import model_name
    from yieldops.training.model import feature_columns_of
    from yieldops.training.registry import champion

    train_frame, holdout = _frames(run)
    challenger = _score(_challenger(run), run["feature_columns"], train_frame, holdout, run)
    _open_experiment(run["product"])
    current = champion(model_name(run["product"]))
    champion_metrics, champion_version = None, None
    if current is not None:
        champion_version, model = current
        scored = _score(model, feature_columns_of(model), train_frame, holdout, run)
        champion_metrics = scored["metrics"]
    log.info("challenger: %s", _headline(challenger["metrics"]))
    log.info("champion v%s: %s", champion_version, _headline(champion_metrics or {}) or "none")
    evaluation = {"challenger": challenger, "champion": champion_metrics}
    (Path(run["run_dir"]) / "evaluation.json").write_text(json.dumps(evaluation, indent=2))
    return {
        **run,
        "challenger": challenger["metrics"],
        "champion": champion_metrics,
        "champion_version": champion_version,
    }


def _score(model, columns: list[str], train_frame, holdout, run: dict) -> dict:
    """One model's holdout evaluation as JSON; the no-skill wafer yields are the training
    lots' yield (what a yield engineer expects without a model)."""
    from yieldops.training.evaluation import evaluate as score

    return score(
        model,
        holdout,
        columns,
        recall_precision=_config(run).gate.recall_precision,
        reference_yield=float(train_frame["good"].mean()),
    ).to_dict()


def _headline(metrics: dict) -> str:
    from yieldops.training.evaluation import no_skill_key

    return ", ".join(
        f"{k} {metrics[k]:.4f} (no skill {metrics.get(no_skill_key(k)) or 0:.4f})"
        for k in ("accuracy", "balanced_accuracy", "roc_auc", "recall_bad_at_precision")
        if metrics.get(k) is not None
    )


def gate(run: dict) -> str:
    from yieldops.training.gate import gate as judge

    result = judge(run["challenger"], run["champion"], _config(run).gate)
    (Path(run["run_dir"]) / "gate.json").write_text(json.dumps(result.to_dict(), indent=2))
    for reason in result.reasons:
        log.info("gate: %s", reason)
    return "register" if result.passed else "reject"


def _gate_result(run: dict) -> dict:
    return json.loads((Path(run["run_dir"]) / "gate.json").read_text())


def _log_run(run: dict, tags: dict) -> str:
    """The MLflow run of this training, whatever the gate said."""
    import numpy as np

    from yieldops.features import feature_matrix
    from yieldops.training.model import predict_good_proba
    from yieldops.training.registry import log_training_run

    train_frame, holdout = _frames(run)
    model = _challenger(run)
    columns = run["feature_columns"]
    config = _config(run)
    probability = np.asarray(predict_good_proba(model, holdout, columns))
    evaluation = json.loads((Path(run["run_dir"]) / "evaluation.json").read_text())["challenger"]
    experiment = _open_experiment(run["product"])
    mlflow_run = log_training_run(
        experiment,
        model,
        feature_matrix(train_frame, columns),
        train_frame["good"].to_numpy(),
        params={"estimator": config.model.estimator, **config.model.params},
        metrics=run["challenger"],
        champion_metrics=run["champion"],
        holdout_features=feature_matrix(holdout, columns),
        holdout_labels=holdout["good"].to_numpy(),
        lineage=json.loads((Path(run["run_dir"]) / "lineage.json").read_text()),
        data_source=f"{runtime_settings().curated_dir}/product={run['product']}",
        pictures=_pictures(holdout, probability, evaluation, config),
        run_name=f"{run['product']} {run['run_id']}",
        tags={"airflow_run_id": run["run_id"], "holdout": run["holdout"]["note"], **tags},
    )
    _link_mlflow_run(experiment, mlflow_run)
    return mlflow_run


def _link_mlflow_run(experiment_id: str, mlflow_run: str) -> None:
    """The task's "Wafer maps" and (for a tracking server) "MLflow run" buttons."""
    import mlflow
    from airflow.sdk import get_current_context

    ti = get_current_context()["ti"]
    for key, url in training_run_links(
        mlflow.get_tracking_uri(), experiment_id, mlflow_run
    ).items():
        ti.xcom_push(key=key, value=url)


def _pictures(holdout, good_probability, evaluation: dict, config) -> dict[str, bytes]:
    """Per holdout wafer the actual bins and the predicted fail probability; ROC; confusion."""
    from yieldops.training.plots import confusion_matrix_png, roc_curve_png, wafer_map_png

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


def register(run: dict, outlet_events) -> dict:
    """Log the run, register a model version with alias ``challenger`` (never ``champion``)."""
    from airflow.sdk import Asset, AssetAlias

    from yieldops.names import model_name
    from yieldops.training.registry import register_challenger

    result = _gate_result(run)
    mlflow_run = _log_run(run, {"gate": "passed"})
    name = model_name(run["product"])
    version = register_challenger(mlflow_run, name, result)
    outlet_events[AssetAlias(CHALLENGER_ALIAS)].add(
        Asset(challenger_asset_name(name)),
        extra={
            "product": run["product"],
            "model": name,
            "version": version,
            "mlflow_run_id": mlflow_run,
        },
    )
    set_run_note(
        "yield_training",
        run["run_id"],
        f"{run['product']}: registered {name} v{version} as challenger. "
        + _holdout_note(run)
        + " ".join(result["reasons"]),
    )
    log.info("registered %s version %s as challenger (MLflow run %s)", name, version, mlflow_run)
    return {"model": name, "version": version, "mlflow_run_id": mlflow_run}


def _holdout_note(run: dict) -> str:
    """How the holdout was chosen, when it was not the usual newest lot(s)."""
    holdout = run["holdout"]
    return "" if holdout["by"] == "lots" else f"Few lots: {holdout['note']}. "


def reject(run: dict) -> dict:
    """Log the run as rejected, register nothing, tell people why."""
    from yieldops_airflow.notifiers import YieldopsNotifier

    result = _gate_result(run)
    mlflow_run = _log_run(
        run, {"gate": "rejected", "gate_reasons": "; ".join(result["reasons"])[:5000]}
    )
    reason = "; ".join(r for r in result["reasons"] if "FAIL" in r.upper()) or "; ".join(
        result["reasons"]
    )
    log.warning("challenger rejected, nothing registered: %s", reason)
    set_run_note(
        "yield_training",
        run["run_id"],
        f"{run['product']}: rejected by the gate: {_holdout_note(run)}{reason}",
    )
    YieldopsNotifier().send(
        f"yield_training: {run['product']} challenger rejected by the gate",
        {"run_id": run["run_id"], "mlflow_run_id": mlflow_run, "reasons": result["reasons"]},
    )
    return {"rejected": True, "reasons": result["reasons"], "mlflow_run_id": mlflow_run}
