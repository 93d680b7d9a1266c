"""The task bodies of ``model_rollout``: Airflow context in, ``yieldops.rollout.flow``
calls out, the plan and each routed step handed on as XCom dicts (``to_dict``/``from_dict``).
Gateways come from their connections, the registry from the configured MLflow store."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from airflow.sdk.exceptions import AirflowFailException

from yieldops.names import model_of_challenger_asset
from yieldops.rollout import flow
from yieldops.rollout.plan import RolloutPlan, RunOrigin
from yieldops_airflow.hooks import GatewayHook, MlflowStoreHook
from yieldops_airflow.notes import set_run_note
from yieldops_airflow.runtime import runtime_settings

if TYPE_CHECKING:
    from yieldops.serving.client import GatewayClient

log = logging.getLogger(__name__)
DAG_ID = "model_rollout"
STEP_TASKS = ("set_routing", "wait", "analyse")  # the tasks of each step group


def plan(params: dict, triggering_asset_events, dag_run, offered_steps: list[str]) -> dict:
    """A plan that cannot be (a model or version the registry lacks, a step the deployment
    does not offer...) fails at once, without retry, and says why in the run note."""
    from yieldops.rollout.versions import UnknownVersion

    event = _challenger_event(triggering_asset_events)
    origin = RunOrigin(DAG_ID, dag_run.run_id, _triggered_by(dag_run, event))
    try:
        with rollout_services() as services:
            planned = flow.plan_rollout(params, event, offered_steps, origin, services)
    except (ValueError, UnknownVersion) as exc:
        set_run_note(DAG_ID, dag_run.run_id, f"Not rolled out: {exc}")
        raise AirflowFailException(str(exc)) from exc
    return planned.to_dict()


def _challenger_event(triggering_asset_events) -> dict:
    """The newest ``model/<name>/challenger`` event's extra, plus where it came from."""
    events = [
        e
        for asset, found in (triggering_asset_events or {}).items()
        if model_of_challenger_asset(asset.name)
        for e in found
    ]
    if not events:
        return {}
    newest = max(events, key=lambda e: e.timestamp)
    return {**newest.extra, "source": f"{newest.source_dag_id}/{newest.source_run_id}"}


def _triggered_by(dag_run, event: dict) -> str:
    if event:
        return f"asset event from {event['source']}"
    user = getattr(dag_run, "triggering_user_name", None)
    kind = getattr(dag_run.run_type, "value", dag_run.run_type)
    return f"{kind} run" + (f" by {user}" if user else "")


def plan_target(rollout: dict, target_name: str, step_groups: list[str]) -> str:
    """Skip at once the tasks of this target's group that the plan does not run, so the Grid
    shows the run's path from its start and the scheduler does not skip ~20 tasks one loop
    at a time."""
    from airflow.sdk.exceptions import DownstreamTasksSkipped

    planned = RolloutPlan.from_dict(rollout)
    unplanned = [f"{target_name}.offline_check"] if planned.skips_offline_check(target_name) else []
    for group in planned.unplanned_steps(target_name, step_groups):
        unplanned += [f"{target_name}.{group}.{task}" for task in STEP_TASKS]
    summary = planned.path_of(target_name)
    if unplanned:
        log.info("%s: skipping %d unplanned tasks", summary, len(unplanned))
        raise DownstreamTasksSkipped(tasks=unplanned)
    return summary


def offline_check(rollout: dict, target_name: str) -> dict:
    planned = RolloutPlan.from_dict(rollout)
    try:
        with rollout_services() as services:
            return flow.check_offline(planned, target_name, services)
    except flow.RolloutStopped as exc:
        raise AirflowFailException(str(exc)) from exc


def set_routing(rollout: dict, target_name: str, step_name: str) -> dict:
    planned = RolloutPlan.from_dict(rollout)
    with rollout_services() as services:
        return flow.route_step(planned, target_name, step_name, services).to_dict()


def approval_required(rollout: dict) -> bool:
    return RolloutPlan.from_dict(rollout).require_approval


def promote(rollout: dict) -> dict:
    """On any error every target goes back to the old champion before the task fails."""
    planned = RolloutPlan.from_dict(rollout)
    try:
        with rollout_services() as services:
            promotion = flow.promote(planned, services)
    except Exception as exc:
        log.exception("promotion failed: rolling back")
        rollback(rollout, [f"promote ({type(exc).__name__}: {exc})"])
        raise
    set_run_note(DAG_ID, planned.run_id, promotion.note)
    return promotion.to_dict()


def rollback(rollout: dict | None, failed_tasks: list[str]) -> dict:
    """After any failure: the library's rollback, then people told and the run note."""
    from yieldops_airflow.notifiers import YieldopsNotifier

    if rollout is None:
        log.error("the rollout failed before it had a plan (%s): nothing to roll back",
                  failed_tasks)  # fmt: skip
        return {"rolled_back": []}
    planned = RolloutPlan.from_dict(rollout)
    with rollout_services() as services:
        done = flow.roll_back(planned, failed_tasks, services)
    ended = (
        "rolled back" if done.ending.status == flow.REJECTED else "aborted, insufficient evidence"
    )
    YieldopsNotifier().send(
        f"model_rollout: {planned.model} v{planned.version} {ended}",
        {"run_id": planned.run_id, "status": done.ending.status, "reason": done.reason,
         "targets": done.restored, "numbers": done.numbers},
    )  # fmt: skip
    set_run_note(DAG_ID, planned.run_id, done.note)
    return done.to_dict()


def gateway_for(target_name: str) -> tuple[GatewayClient, str]:
    """(client, prediction log URL) of a target, from its Airflow connection."""
    from yieldops.serving.client import GatewayNotConfigured

    hook = GatewayHook.for_target(target_name)
    try:
        return hook.get_conn(), hook.prediction_log_url()
    except GatewayNotConfigured as exc:
        raise AirflowFailException(str(exc)) from exc


@contextmanager
def rollout_services() -> Iterator[flow.RolloutServices]:
    """Gateways from their connections, the configured audit log and MLflow store; the
    audit log's connections closed when the task's work is done."""
    from yieldops.rollout.audit import AuditLog

    settings = runtime_settings()
    audit = AuditLog(settings.rollout_db_url)
    try:
        yield flow.RolloutServices(
            gateway_for, audit, settings.curated_dir, MlflowStoreHook(settings).use
        )
    finally:
        audit.close()
