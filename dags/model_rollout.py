"""model_rollout: a challenger -> shadow -> canary -> champion, judged, or rolled back."""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.providers.standard.operators.hitl import ApprovalOperator
from airflow.sdk import Param, TaskGroup, TriggerRule, dag, get_current_context, task

from yieldops.config import products
from yieldops.names import model_name
from yieldops.rollout.plan import STRATEGIES, offered_steps
from yieldops.rollout.targets import load_targets, targets_by_model
from yieldops.rollout.thresholds import default_thresholds, thresholds_schema
from yieldops.settings import load_settings
from yieldops_airflow import rollout as steps
from yieldops_airflow.operators import AnalyseStepOperator
from yieldops_airflow.schedules import challenger_assets
from yieldops_airflow.sensors import RolloutStepSensor

SETTINGS = load_settings()  # param defaults: YIELDOPS_ROLLOUT_* environment
MODELS = sorted(model_name(p) for p in products())
TARGETS = load_targets()
# The form offers the models a target serves, the first target's first: a rollout of
# any other model has nowhere to go.
TARGETS_OF = targets_by_model(TARGETS)
CANARY_WEIGHTS = list(SETTINGS.rollout_canary_steps)
# One task group per step the deployment offers, named as the audit log and the Rollouts
# page name it (shadow, canary-5, ..., switch); a plan runs some of them.
STEP_GROUPS = offered_steps(CANARY_WEIGHTS)
# The form asks for min_samples on its own; the other thresholds are one object, declared
# (defaults, ranges, descriptions) by the library and checked by Airflow at trigger time.
OWN_FIELD_THRESHOLDS = ("min_samples",)

DOC = """
### Model rollout

Scheduled when `yield_training` registers a challenger (asset
`model/<model>/challenger`), and triggerable from the UI for any version.
The prediction gateway serves; this DAG only steers it and judges.

For each deployment target (`include/config/targets.yaml`, one task group per
target, in order; a target starts only after the previous one passed):

0. **plan_target** skips at once the group's tasks this run does not need
   (a target not rolled out to, the steps the plan does not take).
1. **offline_check**: the challenger (and the champion) scored on the
   target's newest curated lots from its fabs, judged by the product's gate.
2. **shadow**, then **canary-5**, **canary-25**, ... (the canary steps this
   deployment offers, `YIELDOPS_ROLLOUT_CANARY_STEPS`) or **switch** (blue-green),
   one task group per step, named as in the audit log and on the Rollouts page:
   *set_routing* on the gateway → *wait* (deferred: no
   worker slot) for the step duration and the minimum samples → *analyse*
   the prediction log since the routing change: error rate (two-proportion
   test), latency (Mann-Whitney U, p95 limit), accuracy on labelled dies
   against the champion on the same dies (McNemar), prediction shift (KS,
   PSI), and agreement in shadow. Inconclusive waits longer, up to the step
   limit. A failed verdict (or one still undecided at the limit) routes the
   target back to the champion at once; so does a step that reaches its limit
   without enough of the challenger's samples to judge it (*no evidence*: its
   mirrored copies dropped, no traffic, no labels), which aborts the rollout.

A plan that cannot be (a model or version MLflow does not have, a step this
deployment does not offer) fails at once, without retry, and the run note says what
exists; a threshold of the wrong type, out of its range or unknown is refused when the
run is triggered. Then **approve** (only when `require_approval`), and **promote**: every
target serves the new version as champion (the old one stays loaded) and the
MLflow alias `champion` moves; ex-champions keep `champion.since/until` tags.
**rollback** runs after any failure: every target back to the champion, the
challenger tagged `rollout.status=rejected` with the reason and the numbers,
a notification; a rollout aborted for insufficient evidence tags it
`rollout.status=aborted` instead (never judged, never rejected: it stays
challenger and can be rolled out again). Every routing change and verdict is in the audit table
`yieldops_rollout_audit` (`YIELDOPS_ROLLOUT_DB_URL`) and the run note.

The first model (no champion yet) is promoted after its offline checks.
`strategy=restore` with an earlier `version` brings back any previous
champion at once. Gateways: one HTTP connection per target (`conn_id` in the
YAML: host, port, password = admin token, extra `prediction_log_url`).
"""


@dag(
    dag_id="model_rollout",
    schedule=challenger_assets(MODELS),
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    doc_md=DOC,
    tags=["yieldops", "rollout", "serving"],
    default_args={"owner": "yieldops", "retries": 1, "retry_delay": timedelta(seconds=10)},
    params={
        "model": Param(
            next(iter(TARGETS_OF), ""),
            type="string",
            enum=list(TARGETS_OF) or [""],
            values_display={m: f"{m} (targets: {', '.join(t)})" for m, t in TARGETS_OF.items()},
            title="Model",
            description="Registered model to roll out when triggered by hand: one a target "
            "of include/config/targets.yaml serves.",
        ),
        "version": Param(
            None,
            type=["null", "integer"],
            minimum=1,
            title="Version",
            description="Model version (MLflow UI, Models); empty: the one with alias "
            "'challenger'. restore: an earlier champion's version.",
        ),
        "strategy": Param(
            "canary",
            type="string",
            enum=list(STRATEGIES),
            title="Strategy",
            description="canary: shadow then growing shares; bluegreen: shadow then switch "
            "all at once; restore: make an earlier champion serve again, no steps.",
        ),
        "canary_steps": Param(
            CANARY_WEIGHTS,
            type="array",
            items={"type": "integer", "enum": CANARY_WEIGHTS},
            minItems=1,
            uniqueItems=True,
            title="Canary steps (%)",
            description="Shares of dies the challenger answers, increasing; any of "
            f"{', '.join(map(str, CANARY_WEIGHTS))} (the task groups canary-<share>; "
            "YIELDOPS_ROLLOUT_CANARY_STEPS sets them).",
        ),
        "step_seconds": Param(
            SETTINGS.rollout_step_seconds, type="integer", minimum=1, title="Step duration (s)",
            description="Each step runs at least this long before its analysis.",
        ),
        "max_step_seconds": Param(
            1800, type="integer", minimum=1, title="Step limit (s)",
            description="An inconclusive step waits up to this long, then rolls back: "
            "rejected when judged worse, aborted when it never had enough samples.",
        ),
        "poll_seconds": Param(
            SETTINGS.rollout_poll_seconds, type="number", exclusiveMinimum=0,
            title="Poll interval (s)",
            description="How often a waiting step counts its samples.",
        ),
        "min_samples": Param(
            SETTINGS.rollout_min_samples, type="integer", minimum=1, title="Minimum samples",
            description="Requests per version (and labelled dies) before any verdict.",
        ),
        "thresholds": Param(
            default_thresholds(exclude=OWN_FIELD_THRESHOLDS),
            title="Analysis thresholds",
            description="alpha, tolerances and limits of the step analysis "
            "(yieldops.rollout.thresholds), checked when the run is triggered.",
            **thresholds_schema(exclude=OWN_FIELD_THRESHOLDS),
        ),
        "targets": Param(
            None,
            type=["null", "array"],  # the form's multi-select sends null once emptied
            items={"type": "string", "enum": [t.name for t in TARGETS] or [""]},
            examples=[t.name for t in TARGETS],
            values_display={t.name: f"{t.name} (yield-{t.product})" for t in TARGETS},
            title="Targets",
            description="Gateways to roll out to, in YAML order; empty: all of the model's.",
        ),
        "offline_check": Param(
            True, type="boolean", title="Offline check",
            description="Score the model on each target's recent curated lots first; "
            "turn off only for a target whose fabs have no curated data yet.",
        ),
        "require_approval": Param(
            False, type="boolean", title="Require approval",
            description="Ask a person (Airflow's approval form) before promotion.",
        ),
    },
)  # fmt: skip
def model_rollout():
    @task
    def plan(params=None, triggering_asset_events=None, dag_run=None) -> dict:
        return steps.plan(params, triggering_asset_events, dag_run, STEP_GROUPS)

    @task
    def plan_target(rollout: dict, target: str) -> str:
        return steps.plan_target(rollout, target, STEP_GROUPS)

    @task
    def offline_check(rollout: dict, target: str) -> dict:
        return steps.offline_check(rollout, target)

    # A step runs once every earlier step passed or was not planned (skipped).
    @task(trigger_rule=TriggerRule.NONE_FAILED)
    def set_routing(rollout: dict, target: str, step_name: str) -> dict:
        return steps.set_routing(rollout, target, step_name)

    @task(trigger_rule=TriggerRule.NONE_FAILED)
    def target_done(target: str) -> str:
        return target

    @task.short_circuit(ignore_downstream_trigger_rules=False)
    def approval_required(rollout: dict) -> bool:
        return steps.approval_required(rollout)

    @task(trigger_rule=TriggerRule.NONE_FAILED)
    def promote(rollout: dict) -> dict:
        return steps.promote(rollout)

    @task(trigger_rule=TriggerRule.ONE_FAILED)
    def rollback() -> dict:
        ti = get_current_context()["ti"]
        states = ti.get_task_states(dag_id=ti.dag_id, run_ids=[ti.run_id]).get(ti.run_id, {})
        failed = sorted(task for task, state in states.items() if state == "failed")
        return steps.rollback(ti.xcom_pull(task_ids="plan"), failed)

    rollout = plan()
    previous = rollout
    for target in (t.name for t in TARGETS):
        with TaskGroup(group_id=target, tooltip=f"rollout to {target}"):
            checked = offline_check(rollout, target)
            previous >> plan_target(rollout, target) >> checked
            # Each step waits for every earlier one, not only the one before: a step the plan
            # does not take is skipped from the start and must not let the next one begin.
            # target_done waits for all of them too.
            judged = [checked]
            for step_name in STEP_GROUPS:
                with TaskGroup(group_id=step_name, tooltip=f"step {step_name}"):
                    step = set_routing(rollout, target, step_name)
                    waited = RolloutStepSensor(task_id="wait", rollout=rollout, step=step)
                    analysed = AnalyseStepOperator(task_id="analyse", rollout=rollout, step=step)
                    judged >> step >> waited >> analysed
                    judged.append(analysed)
            previous = target_done(target)
            judged >> previous

    approve = ApprovalOperator(
        task_id="approve",
        subject="Promote {{ ti.xcom_pull(task_ids='plan')['model'] }} "
        "v{{ ti.xcom_pull(task_ids='plan')['version'] }} to champion?",
        body="Every target passed its steps. Approve to promote; reject to roll back.",
        fail_on_reject=True,
        response_timeout=timedelta(hours=24),
    )
    promoted = promote(rollout)
    previous >> approval_required(rollout) >> approve >> promoted
    previous >> promoted
    # promote rolls back by itself when it fails, so it stays a leaf: a rolled-back run
    # ends failed (promote upstream_failed) while rollback itself succeeds.
    rolled_back = rollback()
    for upstream in list(rollout.operator.dag.tasks):
        if upstream not in (rolled_back.operator, promoted.operator):
            upstream >> rolled_back


model_rollout()
