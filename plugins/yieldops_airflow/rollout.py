"""The task bodies of ``model_rollout``: Airflow context in, yieldops.rollout calls out.

Tasks hand each other small dicts (XCom): the rollout plan from ``plan``, and per step
what ``set_routing`` changed and since when. Every routing change, verdict and decision
goes to the audit log (``yieldops.rollout.audit``) and, at the end, into the run note.
"""

from __future__ import annotations

import logging
import time
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Any

from airflow.sdk.exceptions import AirflowFailException

from yieldops.names import model_of_challenger_asset, product_of_model
from yieldops_airflow.hooks import GatewayHook, MlflowStoreHook
from yieldops_airflow.notes import set_run_note
from yieldops_airflow.runtime import runtime_settings

log = logging.getLogger(__name__)
DAG_ID = "model_rollout"
ROLLBACK_POLL_SECONDS = 0.05


# -- the plan ------------------------------------------------------------------------------


def plan(params: dict, triggering_asset_events, dag_run, offered_steps: list[str]) -> dict:
    """Model, versions, steps and targets of this run, from the asset event or the params.
    A plan that cannot be (a model or version the registry lacks, a step the deployment
    does not offer...) fails at once, without retry, and says why in the run note."""
    from yieldops.rollout.versions import UnknownVersion

    try:
        return _plan(params, _challenger_event(triggering_asset_events), dag_run, offered_steps)
    except (ValueError, UnknownVersion) as exc:
        set_run_note(DAG_ID, dag_run.run_id, f"Not rolled out: {exc}")
        raise AirflowFailException(str(exc)) from exc


def _plan(params: dict, event: dict, dag_run, offered_steps: list[str]) -> dict:
    from yieldops.rollout.analysis import Thresholds
    from yieldops.rollout.plan import plan_steps
    from yieldops.rollout.targets import targets_for
    from yieldops.rollout.versions import chosen_version
    from yieldops.training import registry

    model = event.get("model") or params["model"]
    if not model:
        raise ValueError("no model chosen: pick one of the form's models")
    product = product_of_model(model)
    _use_mlflow()
    version = event.get("version") or params.get("version")
    version = chosen_version(model, int(version) if version else None)
    champion = registry.alias_version(model, registry.CHAMPION)
    strategy = params["strategy"]
    if champion == version:
        raise ValueError(f"{model} v{version} is already the champion")
    if strategy == "restore" and not registry.served_before(model, version):
        raise ValueError(f"{model} v{version} never served: restore only earlier champions")
    thresholds = Thresholds().with_overrides(
        {**(params.get("thresholds") or {}), "min_samples": params["min_samples"]}
    )
    # The first model has no champion to compare with: it is promoted after its checks.
    steps = (
        plan_steps(strategy, params["canary_steps"], offered_steps) if champion is not None else []
    )
    targets = [t.name for t in targets_for(product, params.get("targets") or None)]
    if not targets:
        raise ValueError(f"no deployment target for {product} in targets.yaml")
    rollout = {
        "product": product,
        "model": model,
        "version": version,
        "champion": champion,
        "strategy": strategy,
        "steps": [s.to_dict() for s in steps],
        "targets": targets,
        "step_seconds": params["step_seconds"],
        "max_step_seconds": max(params["max_step_seconds"], params["step_seconds"]),
        "poll_seconds": params["poll_seconds"],
        "thresholds": thresholds.__dict__,
        "require_approval": params["require_approval"],
        "offline_check": params["offline_check"],
        "dag_id": DAG_ID,
        "run_id": dag_run.run_id,
        "triggered_by": _triggered_by(dag_run, event),
    }
    log.info(
        "rolling out %s v%s over champion v%s: %s through %s",
        model,
        version,
        champion,
        " -> ".join(s.name for s in steps) or "no step",
        ", ".join(targets),
    )
    return rollout


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


# -- targets and their gateways --------------------------------------------------------------


STEP_TASKS = ("set_routing", "wait", "analyse")  # the tasks of each step group


def plan_target(rollout: dict, target_name: str, step_groups: list[str]) -> str:
    """Skip at once the tasks of this target's group that the plan does not run: all of them
    for a target not in the plan, the offline check of a restore, the step groups the plan
    has no step for. The Grid shows the run's path from its start, and the scheduler does
    not have to skip a chain of ~20 tasks one loop at a time."""
    from airflow.sdk.exceptions import DownstreamTasksSkipped

    taking_part = target_name in rollout["targets"]
    unplanned = []
    if not taking_part or rollout["strategy"] == "restore":
        unplanned.append(f"{target_name}.offline_check")
    planned = {step["name"] for step in rollout["steps"]} if taking_part else set()
    for group in step_groups:
        if group not in planned:
            unplanned += [f"{target_name}.{group}.{task}" for task in STEP_TASKS]
    summary = (
        f"{target_name} is not a target of {rollout['model']}"
        if not taking_part
        else f"{rollout['strategy']}: "
        + (" -> ".join(s["name"] for s in rollout["steps"]) or "no step")
    )
    if unplanned:
        log.info("%s: skipping %d unplanned tasks", summary, len(unplanned))
        raise DownstreamTasksSkipped(tasks=unplanned)
    return summary


def gateway_for(target_name: str):
    """(client, prediction log URL) of a target, from its Airflow connection."""
    from yieldops.serving.client import GatewayNotConfigured

    hook = GatewayHook.for_target(target_name)
    try:
        return hook.get_conn(), hook.prediction_log_url()
    except GatewayNotConfigured as exc:
        raise AirflowFailException(str(exc)) from exc


def offline_check(rollout: dict, target_name: str) -> dict:
    """The challenger on the target's recent curated lots, judged by the product's gate."""
    from yieldops.config import product
    from yieldops.rollout.offline import NoRecentData
    from yieldops.rollout.offline import offline_check as check
    from yieldops.rollout.targets import load_targets
    from yieldops.training import registry

    if not rollout["offline_check"]:
        _audit(rollout, "offline_check", "offline check off (param)", target=target_name)
        return {"passed": None, "reasons": ["off by param"]}
    target = next(t for t in load_targets() if t.name == target_name)
    _use_mlflow()
    challenger = registry.load_version(rollout["model"], rollout["version"])
    champion = rollout["champion"]
    baseline = registry.load_version(rollout["model"], champion) if champion else None
    config = product(rollout["product"])
    try:
        result = check(runtime_settings().curated_dir, config, target, challenger, baseline)
    except NoRecentData as exc:
        result = {"passed": False, "reasons": [str(exc)], "lots": []}
    except Exception as exc:  # a model that cannot score curated dies must not take traffic
        reason = f"the model could not score the recent lots: {type(exc).__name__}: {exc}"
        result = {"passed": False, "reasons": [reason[:1000]], "lots": []}
    verdict = "pass" if result["passed"] else "fail"
    summary = f"offline check on lots {', '.join(result['lots'])}: {verdict}; " + "; ".join(
        result["reasons"]
    )
    _audit(rollout, "offline_check", summary, target=target_name, verdict=verdict, details=result)
    if not result["passed"]:
        raise AirflowFailException(f"{target_name}: {summary}")
    return result


# -- steps -----------------------------------------------------------------------------------


def set_routing(rollout: dict, target_name: str, step_name: str) -> dict:
    """Route the step ``step_name`` on the target's gateway (plan_target skipped the step
    groups the plan has no step for)."""
    step = next(s for s in rollout["steps"] if s["name"] == step_name)
    client, log_url = gateway_for(target_name)
    routing = client.update(
        champion=rollout["champion"], challenger=rollout["version"], **step["routing"]
    )
    since = datetime.now(timezone.utc).isoformat()
    _audit(
        rollout,
        "routing",
        f"routing {_describe(routing)}",
        target=target_name,
        step=step["name"],
        details=routing,
    )
    return {
        "target": target_name,
        "name": step["name"],
        "check_agreement": step["check_agreement"],
        "since": since,
        "log_url": log_url,
    }


def analyse_step(rollout: dict, step: dict) -> dict:
    """The step's verdict on the prediction log since its routing change (audited)."""
    from yieldops.config import product
    from yieldops.features import die_labels
    from yieldops.rollout.analysis import Thresholds
    from yieldops.rollout.window import judge_window, lots_in, read_window

    window = _window(rollout, step)
    rows = read_window(step["log_url"], window)
    config = product(rollout["product"])
    labels = die_labels(runtime_settings().curated_dir, config, lots_in(rows))
    verdict = judge_window(
        rows, window, labels, Thresholds(**rollout["thresholds"]), step["check_agreement"]
    ).to_dict()
    verdict["elapsed_seconds"] = elapsed_seconds(step)
    _audit(
        rollout,
        "verdict",
        verdict["summary"],
        target=step["target"],
        step=step["name"],
        verdict=verdict["verdict"],
        details=verdict,
    )
    for check in verdict["checks"]:
        log.info("%s: %s: %s", check["name"], check["verdict"], check["reason"])
    return verdict


def _window(rollout: dict, step: dict):
    from yieldops.rollout.window import StepWindow

    return StepWindow(
        rollout["champion"], rollout["version"], datetime.fromisoformat(step["since"])
    )


def elapsed_seconds(step: dict) -> float:
    return (datetime.now(timezone.utc) - datetime.fromisoformat(step["since"])).total_seconds()


def roll_back_now(rollout: dict, step: dict, verdict: dict, reason: str, decided_at: float):
    """Routing back to the champion at once; audited with the seconds since the verdict."""
    client, _ = gateway_for(step["target"])
    answer = client.rollback()
    restored = _await_champion_only(client)
    seconds = time.monotonic() - decided_at
    details = {
        "seconds_from_verdict": seconds,
        "gateway_took_ms": answer.get("took_ms"),
        "routing": restored,
        "verdict": verdict,
    }
    summary = f"{reason} -> back to champion v{restored['champion']} in {seconds:.3f} s"
    _audit(
        rollout,
        "rollback",
        summary,
        target=step["target"],
        step=step["name"],
        verdict="fail",
        details=details,
    )
    log.warning("%s: %s", step["target"], summary)
    return details


def _await_champion_only(client, timeout: float = 10.0) -> dict:
    """The routing once the gateway reports the champion alone (read back, not assumed)."""
    deadline = time.monotonic() + timeout
    while True:
        routing = client.routing()
        if routing["mode"] == "off" or time.monotonic() > deadline:
            return routing
        time.sleep(ROLLBACK_POLL_SECONDS)


# -- the end: promote or roll back -------------------------------------------------------------


def approval_required(rollout: dict) -> bool:
    return bool(rollout["require_approval"])


def promote(rollout: dict) -> dict:
    """Every target serves the new version as champion; then MLflow alias ``champion`` moves.
    On any error every target goes back to the old champion before the task fails."""
    try:
        return _promote(rollout)
    except Exception as exc:
        log.exception("promotion failed: rolling back")
        rollback(rollout, [f"promote ({type(exc).__name__}: {exc})"])
        raise


def _promote(rollout: dict) -> dict:
    from yieldops.training import registry

    for target_name in rollout["targets"]:
        client, _ = gateway_for(target_name)
        routing = client.update(
            champion=rollout["version"], challenger=None, mode="off", weight=0, live="champion"
        )
        _audit(
            rollout, "routing", f"routing {_describe(routing)}", target=target_name, step="promote"
        )
    _use_mlflow()
    previous = registry.promote_champion(
        rollout["model"], rollout["version"], {"rollout.run_id": rollout["run_id"]}
    )
    summary = (
        f"{rollout['model']} v{rollout['version']} is champion "
        f"(was {f'v{previous}' if previous else 'none'}; {rollout['strategy']})"
    )
    _audit(rollout, "promoted", summary, verdict="pass")
    _finish(rollout, f"{summary}.")
    return {"champion": rollout["version"], "previous": previous}


def rollback(rollout: dict | None, failed_tasks: list[str]) -> dict:
    """After any failure: every target back to the champion, the challenger rejected."""
    from yieldops.training import registry
    from yieldops_airflow.notifiers import YieldopsNotifier

    if rollout is None:
        log.error(
            "the rollout failed before it had a plan (%s): nothing to roll back", failed_tasks
        )
        return {"rolled_back": []}
    restored = [name for name in rollout["targets"] if _restore_target(rollout, name)]
    reason, numbers = _failure_reason(rollout, failed_tasks)
    _use_mlflow()
    model, champion = rollout["model"], rollout["champion"]
    if champion and registry.alias_version(model, registry.CHAMPION) == rollout["version"]:
        registry.promote_champion(model, champion, {"rollout.restored_by": rollout["run_id"]})
    if rollout["strategy"] != "restore":
        registry.reject_version(rollout["model"], rollout["version"], reason, numbers)
        _audit(rollout, "rejected", f"v{rollout['version']} rejected: {reason}", verdict="fail")
    YieldopsNotifier().send(
        f"model_rollout: {rollout['model']} v{rollout['version']} rolled back",
        {"run_id": rollout["run_id"], "reason": reason, "targets": restored, "numbers": numbers},
    )
    _finish(rollout, f"Rolled back: {reason}.")
    return {"rolled_back": restored, "reason": reason}


def _restore_target(rollout: dict, target_name: str) -> bool:
    """Back to the champion this rollout started from; True when something changed."""
    try:
        client, _ = gateway_for(target_name)
        routing = client.routing()
        if routing["champion"] == rollout["version"] and rollout["champion"] is not None:
            routing = client.update(champion=rollout["champion"], challenger=None, mode="off")
        elif routing.get("challenger") == rollout["version"] and routing["mode"] != "off":
            routing = client.rollback()
        else:
            return False
    except Exception as exc:  # one unreachable gateway must not keep the others on the challenger
        log.exception("could not restore %s", target_name)
        _audit(rollout, "rollback", f"could not restore routing: {exc}", target=target_name)
        return False
    _audit(
        rollout, "rollback", f"routing {_describe(routing)}", target=target_name, details=routing
    )
    return True


def _failure_reason(rollout: dict, failed_tasks: list[str]) -> tuple[str, Any]:
    """The failing verdict's or check's summary and numbers, else the failed tasks."""
    with _audit_log() as audit:
        records = audit.rows(run_id=rollout["run_id"], verdict="fail")
    if records:
        last = records[-1]
        where = "/".join(p for p in (last["target"], last["step"]) if p)
        return f"{where}: {last['summary']}", last["details"]
    return f"task(s) failed: {', '.join(failed_tasks) or 'unknown'}", None


def _finish(rollout: dict, headline: str) -> None:
    """The run note: the headline, then the run's audit records."""
    from yieldops.rollout.audit import run_note

    with _audit_log() as audit:
        records = audit.rows(run_id=rollout["run_id"])
    set_run_note(DAG_ID, rollout["run_id"], f"{headline}\n{run_note(records)}")


# -- shared ------------------------------------------------------------------------------------


def _describe(routing: dict) -> str:
    mode = routing["mode"]
    detail = {"canary": f" {routing['weight']}%", "bluegreen": f" live={routing['live']}"}
    return f"{mode}{detail.get(mode, '')}: champion v{routing['champion']}" + (
        f", challenger v{routing['challenger']}" if routing.get("challenger") else ""
    )


def _use_mlflow() -> None:
    MlflowStoreHook().use()


@contextmanager
def _audit_log():
    """The audit log for one task's work, its connections closed afterwards."""
    from yieldops.rollout.audit import AuditLog

    audit = AuditLog(runtime_settings().rollout_db_url)
    try:
        yield audit
    finally:
        audit.close()


def _audit(rollout: dict, event: str, summary: str, **fields: Any) -> None:
    from yieldops.rollout.audit import RolloutRef

    ref = RolloutRef(
        model=rollout["model"],
        version=rollout["version"],
        champion=rollout["champion"],
        dag_id=rollout["dag_id"],
        run_id=rollout["run_id"],
        triggered_by=rollout["triggered_by"],
    )
    with _audit_log() as audit:
        audit.record(ref, event, summary, **fields)
