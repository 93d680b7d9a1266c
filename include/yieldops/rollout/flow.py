"""A rollout from its plan to promotion or rollback, one function per task of
``model_rollout``, without Airflow.

What a rollout acts on is passed in (:class:`RolloutServices`): each target's gateway, the
audit log, the curated data and the MLflow registry, so the same calls run under Airflow
(hooks) and in tests (a gateway on loopback, a SQLite store). The plan and each routed step
travel between tasks as JSON (``to_dict``/``from_dict``). Every routing change, verdict and
decision goes to the audit log, and :func:`run_note_text` tells the run's story from it.

Light to import: the Airflow glue imports it when DAG files are parsed, so MLflow, pandas
and scipy load inside the calls that need them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..config import product
from ..names import product_of_model
from .audit import AuditLog, RolloutRef, run_note
from .plan import RolloutPlan, RoutedStep, RunOrigin, StepTiming, plan_steps
from .targets import load_targets, targets_for
from .thresholds import Thresholds

if TYPE_CHECKING:
    from ..serving.client import GatewayClient
    from .analysis import StepVerdict
    from .window import StepWindow

log = logging.getLogger(__name__)
ROLLBACK_POLL_SECONDS = 0.05
CHAMPION_ONLY_TIMEOUT_SECONDS = 10.0


class RolloutStopped(Exception):
    """A check stopped the rollout; the message says where and why."""


@dataclass(frozen=True)
class RolloutServices:
    """What a rollout acts on."""

    gateway: Callable[[str], tuple[GatewayClient, str]]  # target -> client, prediction-log URL
    audit: AuditLog
    curated_dir: Path  # labels of the judged dies, the offline check's lots
    use_registry: Callable[[], object]  # points MLflow at the registry before it is used


@dataclass(frozen=True)
class StepJudgement:
    verdict: StepVerdict
    elapsed_seconds: float

    def to_dict(self) -> dict[str, Any]:
        return {**self.verdict.to_dict(), "elapsed_seconds": self.elapsed_seconds}


@dataclass(frozen=True)
class Promotion:
    champion: int
    previous: int | None
    note: str  # the run note: what happened, then the run's audit records

    def to_dict(self) -> dict[str, Any]:
        return {"champion": self.champion, "previous": self.previous}


@dataclass(frozen=True)
class Rollback:
    restored: list[str]  # the targets whose routing changed back
    reason: str
    numbers: Any  # the failing verdict's or check's, when there is one
    note: str  # the run note: why, then the run's audit records

    def to_dict(self) -> dict[str, Any]:
        return {"rolled_back": self.restored, "reason": self.reason}


# -- the plan ------------------------------------------------------------------------------


def plan_rollout(
    form: Mapping[str, Any],
    event: Mapping[str, Any],
    offered_steps: Sequence[str],
    origin: RunOrigin,
    services: RolloutServices,
) -> RolloutPlan:
    """The plan from the challenger asset event's extra (``model``, ``version``,
    ``product``), else from the trigger ``form``. ValueError (UnknownVersion for a model or
    version the registry lacks) says why a plan cannot be."""
    model = event.get("model") or form["model"]
    if not model:
        raise ValueError("no model chosen: pick one of the form's models")
    product_name = event.get("product") or product_of_model(model)
    services.use_registry()
    strategy = form["strategy"]
    version, champion = _versions(model, event.get("version") or form.get("version"), strategy)
    thresholds = Thresholds().with_overrides(
        {**(form.get("thresholds") or {}), "min_samples": form["min_samples"]}
    )
    # The first model has no champion to compare with: it is promoted after its checks.
    steps = (
        plan_steps(strategy, form["canary_steps"], offered_steps) if champion is not None else []
    )
    targets = [t.name for t in targets_for(product_name, form.get("targets") or None)]
    if not targets:
        raise ValueError(f"no deployment target for {product_name} in targets.yaml")
    plan = RolloutPlan(
        product=product_name,
        model=model,
        version=version,
        champion=champion,
        strategy=strategy,
        steps=tuple(steps),
        targets=tuple(targets),
        # the step limit is never shorter than a step
        timing=StepTiming(
            form["step_seconds"],
            max(form["max_step_seconds"], form["step_seconds"]),
            form["poll_seconds"],
        ),
        thresholds=thresholds,
        require_approval=form["require_approval"],
        offline_check=form["offline_check"],
        **asdict(origin),
    )
    log.info(
        "rolling out %s v%s over champion v%s: %s through %s",
        model, version, champion, plan.path(), ", ".join(targets),
    )  # fmt: skip
    return plan


def _versions(model: str, requested: Any, strategy: str) -> tuple[int, int | None]:
    """The version to roll out (``requested``, else the challenger) and the champion now."""
    from ..training import registry
    from .versions import chosen_version

    version = chosen_version(model, int(requested) if requested else None)
    champion = registry.alias_version(model, registry.CHAMPION)
    if champion == version:
        raise ValueError(f"{model} v{version} is already the champion")
    if strategy == "restore" and not registry.served_before(model, version):
        raise ValueError(f"{model} v{version} never served: restore only earlier champions")
    return version, champion


# -- a target's checks and steps -------------------------------------------------------------


def check_offline(plan: RolloutPlan, target_name: str, services: RolloutServices) -> dict:
    """The challenger on the target's recent curated lots, judged by the product's gate;
    RolloutStopped when it fails."""
    if not plan.offline_check:
        _record(plan, services, "offline_check", "offline check off (param)", target=target_name)
        return {"passed": None, "reasons": ["off by param"]}
    result = _offline_result(plan, target_name, services)
    verdict = "pass" if result["passed"] else "fail"
    summary = f"offline check on lots {', '.join(result['lots'])}: {verdict}; " + "; ".join(
        result["reasons"]
    )
    _record(plan, services, "offline_check", summary, target=target_name, verdict=verdict,
            details=result)  # fmt: skip
    if not result["passed"]:
        raise RolloutStopped(f"{target_name}: {summary}")
    return result


def _offline_result(plan: RolloutPlan, target_name: str, services: RolloutServices) -> dict:
    """The gate's result on the target's recent lots; no lots, or a model that cannot score
    them, fails it."""
    from ..training import registry
    from .offline import NoRecentData, offline_check

    target = next(t for t in load_targets() if t.name == target_name)
    services.use_registry()
    challenger = registry.load_version(plan.model, plan.version)
    baseline = registry.load_version(plan.model, plan.champion) if plan.champion else None
    try:
        return offline_check(
            services.curated_dir, product(plan.product), target, challenger, baseline
        )
    except NoRecentData as exc:
        return {"passed": False, "reasons": [str(exc)], "lots": []}
    except Exception as exc:  # a model that cannot score curated dies must not take traffic
        reason = f"the model could not score the recent lots: {type(exc).__name__}: {exc}"
        return {"passed": False, "reasons": [reason[:1000]], "lots": []}


def route_step(
    plan: RolloutPlan, target_name: str, step_name: str, services: RolloutServices
) -> RoutedStep:
    """The step's routing set on the target's gateway, from now."""
    step = plan.step(step_name)
    client, log_url = services.gateway(target_name)
    routing = client.update(champion=plan.champion, challenger=plan.version, **step.routing)
    since = datetime.now(timezone.utc)
    _record(plan, services, "routing", f"routing {describe_routing(routing)}",
            target=target_name, step=step.name, details=routing)  # fmt: skip
    return RoutedStep(target_name, step.name, step.check_agreement, since, log_url)


def step_window(plan: RolloutPlan, step: RoutedStep) -> StepWindow:
    """Both versions' prediction-log rows since the step's routing change."""
    from .window import StepWindow

    return StepWindow(plan.compared_champion, plan.version, step.since)


def judge_step(plan: RolloutPlan, step: RoutedStep, services: RolloutServices) -> StepJudgement:
    """The step's verdict on the prediction log since its routing change (audited)."""
    from ..features import die_labels
    from .window import judge_window, lots_in, read_window

    window = step_window(plan, step)
    rows = read_window(step.log_url, window)
    labels = die_labels(services.curated_dir, product(plan.product), lots_in(rows))
    verdict = judge_window(rows, window, labels, plan.thresholds, step.check_agreement)
    judged = StepJudgement(verdict, step.elapsed_seconds())
    _record(plan, services, "verdict", verdict.summary, target=step.target, step=step.name,
            verdict=verdict.verdict.value, details=judged.to_dict())  # fmt: skip
    return judged


def roll_back_step(
    plan: RolloutPlan,
    step: RoutedStep,
    judged: StepJudgement,
    reason: str,
    decided_at: float,
    services: RolloutServices,
) -> dict[str, Any]:
    """The step's target back to the champion at once; audited with the seconds since the
    verdict (``decided_at``, ``time.monotonic()``)."""
    client, _ = services.gateway(step.target)
    answer = client.rollback()
    restored = await_champion_only(client)
    seconds = time.monotonic() - decided_at
    details = {
        "seconds_from_verdict": seconds,
        "gateway_took_ms": answer.get("took_ms"),
        "routing": restored,
        "verdict": judged.to_dict(),
    }
    summary = f"{reason} -> back to champion v{restored['champion']} in {seconds:.3f} s"
    _record(plan, services, "rollback", summary, target=step.target, step=step.name,
            verdict="fail", details=details)  # fmt: skip
    log.warning("%s: %s", step.target, summary)
    return details


def await_champion_only(
    client: GatewayClient, timeout: float = CHAMPION_ONLY_TIMEOUT_SECONDS
) -> dict[str, Any]:
    """The routing once the gateway reports the champion alone (read back, not assumed)."""
    deadline = time.monotonic() + timeout
    while True:
        routing = client.routing()
        if routing["mode"] == "off" or time.monotonic() > deadline:
            return routing
        time.sleep(ROLLBACK_POLL_SECONDS)


# -- the end: promote or roll back -------------------------------------------------------------


def promote(plan: RolloutPlan, services: RolloutServices) -> Promotion:
    """Every target serves the new version as champion; then MLflow alias ``champion``
    moves. The caller rolls back (:func:`roll_back`) when this raises."""
    from ..training import registry

    for target_name in plan.targets:
        client, _ = services.gateway(target_name)
        routing = client.update(
            champion=plan.version, challenger=None, mode="off", weight=0, live="champion"
        )
        _record(plan, services, "routing", f"routing {describe_routing(routing)}",
                target=target_name, step="promote")  # fmt: skip
    services.use_registry()
    previous = registry.promote_champion(plan.model, plan.version, {"rollout.run_id": plan.run_id})
    summary = (
        f"{plan.model} v{plan.version} is champion "
        f"(was {f'v{previous}' if previous else 'none'}; {plan.strategy})"
    )
    _record(plan, services, "promoted", summary, verdict="pass")
    return Promotion(plan.version, previous, run_note_text(plan, f"{summary}.", services.audit))


def roll_back(
    plan: RolloutPlan, failed_tasks: Sequence[str], services: RolloutServices
) -> Rollback:
    """After any failure: every target back to the champion, the champion alias back if
    promotion had moved it, the challenger rejected with the reason and its numbers."""
    from ..training import registry

    restored = [name for name in plan.targets if restore(plan, name, services)]
    reason, numbers = failure_reason(plan, failed_tasks, services.audit)
    services.use_registry()
    model, champion = plan.model, plan.champion
    if champion and registry.alias_version(model, registry.CHAMPION) == plan.version:
        registry.promote_champion(model, champion, {"rollout.restored_by": plan.run_id})
    if plan.strategy != "restore":
        registry.reject_version(model, plan.version, reason, numbers)
        _record(plan, services, "rejected", f"v{plan.version} rejected: {reason}", verdict="fail")
    note = run_note_text(plan, f"Rolled back: {reason}.", services.audit)
    return Rollback(restored, reason, numbers, note)


def restore(plan: RolloutPlan, target_name: str, services: RolloutServices) -> bool:
    """The target back to the champion this rollout started from; True when something
    changed. An unreachable gateway is audited, not raised: the others still go back."""
    try:
        client, _ = services.gateway(target_name)
        routing = client.routing()
        if routing["champion"] == plan.version and plan.champion is not None:
            routing = client.update(champion=plan.champion, challenger=None, mode="off")
        elif routing.get("challenger") == plan.version and routing["mode"] != "off":
            routing = client.rollback()
        else:
            return False
    except Exception as exc:
        log.exception("could not restore %s", target_name)
        _record(plan, services, "rollback", f"could not restore routing: {exc}",
                target=target_name)  # fmt: skip
        return False
    _record(plan, services, "rollback", f"routing {describe_routing(routing)}",
            target=target_name, details=routing)  # fmt: skip
    return True


def failure_reason(
    plan: RolloutPlan, failed_tasks: Sequence[str], audit: AuditLog
) -> tuple[str, Any]:
    """The failing verdict's or check's summary and numbers, else the failed tasks."""
    records = audit.rows(run_id=plan.run_id, verdict="fail")
    if records:
        last = records[-1]
        where = "/".join(p for p in (last["target"], last["step"]) if p)
        return f"{where}: {last['summary']}", last["details"]
    return f"task(s) failed: {', '.join(failed_tasks) or 'unknown'}", None


def run_note_text(plan: RolloutPlan, headline: str, audit: AuditLog) -> str:
    """The run note: the headline, then the run's audit records."""
    return f"{headline}\n{run_note(audit.rows(run_id=plan.run_id))}"


def describe_routing(routing: Mapping[str, Any]) -> str:
    mode = routing["mode"]
    detail = {"canary": f" {routing['weight']}%", "bluegreen": f" live={routing['live']}"}
    return f"{mode}{detail.get(mode, '')}: champion v{routing['champion']}" + (
        f", challenger v{routing['challenger']}" if routing.get("challenger") else ""
    )


def _record(
    plan: RolloutPlan, services: RolloutServices, event: str, summary: str, **columns: Any
) -> None:
    services.audit.record(rollout_ref(plan), event, summary, **columns)


def rollout_ref(plan: RolloutPlan) -> RolloutRef:
    """Which rollout the plan's audit records belong to."""
    return RolloutRef(
        plan.model, plan.version, plan.champion, plan.dag_id, plan.run_id, plan.triggered_by
    )
