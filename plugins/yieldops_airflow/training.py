"""The task bodies of ``yield_training``: Airflow context in, ``yieldops.training.flow`` out.
Tasks hand each other the flow's records as JSON (XCom); the bulky parts stay in the run folder.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

from yieldops.names import challenger_asset_name, product_of_curated_asset
from yieldops_airflow.links import training_run_links
from yieldops_airflow.notes import set_run_note
from yieldops_airflow.runtime import runtime_settings

if TYPE_CHECKING:
    from yieldops.config import ProductConfig
    from yieldops.training.flow import LoggedRun

DAG_ID = "yield_training"
CHALLENGER_ALIAS = "model-challenger"
Logged = TypeVar("Logged", bound="LoggedRun")


def plan(params: dict, triggering_asset_events, run_id: str) -> dict:
    """The product of this run: the one whose curated data changed, else the param."""
    from yieldops.training.flow import plan_training

    assets = triggering_asset_events or {}
    changed = [p for p in map(product_of_curated_asset, (a.name for a in assets)) if p]
    home, holdout_lots = runtime_settings().home, params.get("holdout_lots")
    return plan_training(changed, params["product"], run_id, home, holdout_lots).to_dict()


def other_products(plan: dict) -> list[dict]:
    """The conf of a run of each other product whose curated data changed meanwhile."""
    from yieldops.training.flow import TrainingPlan

    return [{"product": product} for product in TrainingPlan.from_dict(plan).other_products]


def build_features(plan: dict) -> dict:
    from yieldops.training.flow import TrainingPlan
    from yieldops.training.flow import build_features as build

    run = TrainingPlan.from_dict(plan)
    return build(run, runtime_settings().curated_dir, _config(run.product)).to_dict()


def enough_data(features: dict) -> str:
    from yieldops.training.flow import Skipped, features_of

    return "not_enough_data" if isinstance(features_of(features), Skipped) else "train"


def not_enough_data(features: dict) -> dict:
    """No model this time: said so (not as a gate rejection) in the note and notification."""
    from yieldops.training.flow import Skipped
    from yieldops_airflow.notifiers import YieldopsNotifier

    skipped = Skipped.from_dict(features)
    set_run_note(DAG_ID, skipped.plan.run_id, skipped.run_note())
    YieldopsNotifier().send(*skipped.notification())
    return skipped.to_dict()


def train(features: dict) -> dict:
    from yieldops.training.flow import FeatureSplit, train_challenger

    split = FeatureSplit.from_dict(features)
    train_challenger(split, _config(split.plan.product))
    return features


def evaluate(features: dict) -> dict:
    from yieldops.training.flow import FeatureSplit, evaluate_challenger

    split = FeatureSplit.from_dict(features)
    _open_experiment(split.plan.product)  # where the champion is
    return evaluate_challenger(split, _config(split.plan.product)).to_dict()


def gate(scores: dict) -> str:
    from yieldops.training.flow import HoldoutScores, judge

    scored = HoldoutScores.from_dict(scores)
    return "register" if judge(scored, _config(scored.split.plan.product)).passed else "reject"


def register(scores: dict, outlet_events) -> dict:
    """Log the run, register a model version with alias ``challenger`` (never ``champion``);
    the asset event schedules ``model_rollout``."""
    from airflow.sdk import Asset, AssetAlias

    from yieldops.training.flow import log_and_register

    registered = _log(log_and_register, scores)
    outlet_events[AssetAlias(CHALLENGER_ALIAS)].add(
        Asset(challenger_asset_name(registered.model)),
        extra={
            "product": registered.product,
            "model": registered.model,
            "version": registered.version,
            "mlflow_run_id": registered.mlflow_run_id,
        },
    )
    set_run_note(DAG_ID, registered.run_id, registered.run_note())
    return registered.to_dict()


def reject(scores: dict) -> dict:
    """Log the run as rejected, register nothing, tell people why."""
    from yieldops.training.flow import log_rejected
    from yieldops_airflow.notifiers import YieldopsNotifier

    rejected = _log(log_rejected, scores)
    set_run_note(DAG_ID, rejected.run_id, rejected.run_note())
    YieldopsNotifier().send(*rejected.notification())
    return rejected.to_dict()


def _log(step: Callable[..., Logged], scores: dict) -> Logged:
    """The run logged by ``step`` in the configured MLflow store; the task's buttons to it
    ("Wafer maps", and "MLflow run" for a tracking server)."""
    import mlflow
    from airflow.sdk import get_current_context

    from yieldops.training.flow import HoldoutScores

    scored = HoldoutScores.from_dict(scores)
    product = scored.split.plan.product
    curated_dir = runtime_settings().curated_dir
    logged = step(scored, _config(product), _open_experiment(product), curated_dir)
    run, experiment = logged.mlflow_run_id, logged.experiment_id
    for key, url in training_run_links(mlflow.get_tracking_uri(), experiment, run).items():
        get_current_context()["ti"].xcom_push(key=key, value=url)
    return logged


def _open_experiment(product: str) -> str:
    """MLflow pointed at the configured store; the product's experiment id."""
    from yieldops.training.registry import open_experiment

    settings = runtime_settings()
    return open_experiment(product, settings.home, settings.mlflow_tracking_uri or None)


def _config(product: str) -> ProductConfig:
    from yieldops.config import product as product_config

    return product_config(product)
