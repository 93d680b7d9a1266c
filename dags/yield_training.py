"""yield_training: curated data -> features -> model -> gate against the champion -> MLflow."""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator
from airflow.sdk import AssetAlias, Param, dag, task

from yieldops.config import products
from yieldops_airflow import training as steps
from yieldops_airflow.schedules import curated_assets

PRODUCTS = sorted(products())

DOC = """
### Yield model training

Scheduled on the curated assets (`curated/<product>`) that `stdf_ingest`
updates, and triggerable from the UI for one product.

1. **plan**: the product to train (the param, or the product whose curated
   data changed; other products changed at the same time get their own run).
2. **build_features**: one row per die from the curated dataset: the
   product's parametric tests (label-defining tests excluded), die position
   and site; label *good* when the hard bin is a good bin. The newest lot(s)
   are held out; no lot is split. With too few lots, the newest wafers are
   held out (never splitting a wafer); with too little data to train and
   judge at all, **not_enough_data** ends the run: "skipped: not enough
   data", with the numbers (not a gate rejection).
3. **train**: the product's scikit-learn Pipeline (imputation + estimator
   from the product YAML).
4. **evaluate**: holdout metrics of the challenger, and of the current
   champion (MLflow alias `champion`) on the same holdout.
5. **gate** (branch): each metric beside its no-skill baseline (always the
   majority class, the lots' yield): better than it by `min_lift`, absolute
   thresholds, and not worse than the champion by more than the tolerance.
   Pass -> **register**: MLflow run with model (skops), signature, input
   example, lineage, wafer maps, ROC and confusion matrix; a new model
   version with alias `challenger` (never `champion`), which schedules
   `model_rollout`. Fail -> **reject**: the run is logged in MLflow with the
   reasons, nothing is registered, and a notification goes out.

MLflow tracking URI: `MLFLOW_TRACKING_URI`, or Airflow Variable
`yieldops_mlflow_tracking_uri`; by default a local store under `YIELDOPS_HOME`.
"""


@dag(
    dag_id="yield_training",
    schedule=curated_assets(PRODUCTS),
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    doc_md=DOC,
    tags=["yieldops", "training", "mlflow"],
    default_args={"owner": "yieldops", "retries": 1, "retry_delay": timedelta(seconds=30)},
    params={
        "product": Param(
            PRODUCTS[0] if PRODUCTS else "",
            type="string",
            enum=PRODUCTS or [""],
            title="Product",
            description="Product to train when triggered by hand (events name their own).",
        ),
        "holdout_lots": Param(
            None,
            type=["null", "integer"],
            minimum=1,
            title="Holdout lots",
            description="Newest lots held out for evaluation; empty: the product YAML's value.",
        ),
    },
)
def yield_training():
    @task
    def plan(params=None, triggering_asset_events=None, run_id=None) -> dict:
        return steps.plan(params, triggering_asset_events, run_id)

    @task
    def build_features(plan: dict) -> dict:
        return steps.build_features(plan)

    @task.branch
    def enough_data(features: dict) -> str:
        return steps.enough_data(features)

    @task
    def not_enough_data(features: dict) -> dict:
        return steps.not_enough_data(features)

    @task
    def train(features: dict) -> dict:
        return steps.train(features)

    @task
    def evaluate(features: dict) -> dict:
        return steps.evaluate(features)

    @task.branch
    def gate(scores: dict) -> str:
        return steps.gate(scores)

    @task(outlets=[AssetAlias(steps.CHALLENGER_ALIAS)])
    def register(scores: dict, outlet_events=None) -> dict:
        return steps.register(scores, outlet_events)

    @task
    def reject(scores: dict) -> dict:
        return steps.reject(scores)

    @task
    def other_products(plan: dict) -> list[dict]:
        return steps.other_products(plan)

    planned = plan()
    TriggerDagRunOperator.partial(
        task_id="train_other_products", trigger_dag_id="yield_training"
    ).expand(conf=other_products(planned))
    features = build_features(planned)
    trained = train(features)
    enough_data(features) >> [trained, not_enough_data(features)]
    evaluated = evaluate(trained)
    gate(evaluated) >> [register(evaluated), reject(evaluated)]


yield_training()
