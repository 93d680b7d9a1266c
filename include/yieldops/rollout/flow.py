"""A rollout from its plan to promotion or rollback, one function per task of
``model_rollout``, without Airflow.

What a rollout acts on is passed in (:class:`RolloutServices`): each target's gateway, the
audit log, the curated data and the MLflow registry, so the same calls run under Airflow
(hooks) and in tests (a gateway on loopback, a SQLite store). The plan and each routed step
travel between tasks as JSON (``to_dict``/``from_dict``). Every routing change, verdict and
decision goes to the audit log, and :func:`run_note_text` tells the run's story from it.

A rollout that stops ends one of two ways (:func:`roll_back`): *rejected*, when a step had
the evidence and the challenger failed it (or it stayed undecided to the step's limit), or
*aborted: insufficient evidence*, when a step ran out of time without enough of the
challenger's samples to judge it (its copies dropped, no traffic, no labels). Both take the
challenger off every gateway; only a rejection tags it ``rollout.status=rejected``.

Light to import: the Airflow glue imports it when DAG files are parsed, so MLflow, pandas
and scipy load inside the calls that need them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
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
    # Dies whose mirrored copy the gateway dropped in the window, by role.
    dropped_dies: Mapping[str, int] = field(default_factory=dict)

    @property
    def summary(self) -> str:
        """The verdict's summary, and the copies dropped when there were any."""
        dropped = [f"{role} {dies} dies" for role, dies in self.dropped_dies.items() if dies]
        if not dropped:
            return self.verdict.summary
        return f"{self.verdict.summary}; mirrored copies dropped: {', '.join(dropped)}"

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.verdict.to_dict(),
            "summary": self.summary,
            "elapsed_seconds": self.elapsed_seconds,
            "dropped_dies": dict(self.dropped_dies),
        }


# What a judged step leads to.
PASSED, WAIT, REJECT, ABORT = "pass", "wait", "reject", "abort"
# The audit verdict of a step stopped for want of evidence (a failing one records "fail").
NO_EVIDENCE = "no_evidence"


@dataclass(frozen=True)
class StepDecision:
    action: str  # PASSED, WAIT (judge again later), REJECT or ABORT (stop the rollout)
    reason: str

    @property
    def audit_verdict(self) -> str:
        return NO_EVIDENCE if self.action == ABORT else "fail"


@dataclass(frozen=True)
class Promotion:
    champion: int
    previous: int | None
    note: str  # the run note: what happened, then the run's audit records

    def to_dict(self) -> dict[str, Any]:
        return {"champion": self.champion, "previous": self.previous}


@dataclass(frozen=True)
class Ending:
    """Why a rollout stopped: ``status`` rejected (judged and failed, or a task failed) or
    aborted (a step without the evidence to judge the challenger)."""

    status: str
    reason: str
    numbers: Any  # the failing verdict's or check's, when there is one

    @property
    def headline(self) -> str:
        if self.status == ABORTED:
            return f"Aborted, insufficient evidence: {self.reason}."
        return f"Rolled back: {self.reason}."


REJECTED, ABORTED = "rejected", "aborted"


@dataclass(frozen=True)
class Rollback:
    restored: list[str]  # the targets whose routing changed back
    ending: Ending
    note: str  # the run note: why, then the run's audit records

    @property
    def reason(self) -> str:
        return self.ending.reason

    @property
    def numbers(self) -> Any:
        return self.ending.numbers

    def to_dict(self) -> dict[str, Any]:
        return {"rolled_back": self.restored, "status": self.ending.status, "reason": self.reason}


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
    from .window import dropped_per_version, judge_window, lots_in, read_window

    window = step_window(plan, step)
    rows = read_window(step.log_url, window)
    labels = die_labels(services.curated_dir, product(plan.product), lots_in(rows))
    verdict = judge_window(rows, window, labels, plan.thresholds, step.check_agreement)
    dropped = dropped_per_version(step.log_url, window)
    by_role = {
        f"challenger v{window.challenger}": dropped[window.challenger],
        f"champion v{window.champion}": dropped[window.champion],
    }
    judged = StepJudgement(verdict, step.elapsed_seconds(), by_role)
    _record(plan, services, "verdict", judged.summary, target=step.target, step=step.name,
            verdict=verdict.verdict.value, details=judged.to_dict())  # fmt: skip
    return judged


def decide_step(plan: RolloutPlan, judged: StepJudgement) -> StepDecision:
    """Pass; wait and judge again while an inconclusive step has time left; then reject a
    failed or still undecided step, and abort one that never had the evidence."""
    verdict, elapsed = judged.verdict, judged.elapsed_seconds
    limit = plan.timing.max_step_seconds
    if verdict.verdict.value == "pass":
        return StepDecision(PASSED, judged.summary)
    if verdict.verdict.value == "fail":
        return StepDecision(REJECT, judged.summary)
    if elapsed < limit:
        return StepDecision(WAIT, f"inconclusive after {elapsed:.0f} s: {judged.summary}")
    if verdict.no_evidence:
        return StepDecision(
            ABORT,
            f"insufficient evidence after {elapsed:.0f} s (limit {limit:g} s): {judged.summary}",
        )
    return StepDecision(
        REJECT, f"still inconclusive after {elapsed:.0f} s (limit {limit:g} s): {judged.summary}"
    )


def roll_back_step(
    plan: RolloutPlan,
    step: RoutedStep,
    judged: StepJudgement,
    decision: StepDecision,
    decided_at: float,
    services: RolloutServices,
) -> dict[str, Any]:
    """The step's target back to the champion at once, after a decision that stops the
    rollout; audited (verdict ``fail`` or ``no_evidence``) with the seconds since the
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
    summary = f"{decision.reason} -> back to champion v{restored['champion']} in {seconds:.3f} s"
    _record(plan, services, "rollback", summary, target=step.target, step=step.name,
            verdict=decision.audit_verdict, details=details)  # fmt: skip
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
    promotion had moved it, then the challenger tagged with how the rollout ended: rejected
    with the reason and its numbers, or aborted for insufficient evidence (never rejected:
    it was not judged)."""
    from ..training import registry

    restored = [name for name in plan.targets if restore(plan, name, services)]
    ending = rollout_ending(plan, failed_tasks, services.audit)
    services.use_registry()
    model, champion = plan.model, plan.champion
    if champion and registry.alias_version(model, registry.CHAMPION) == plan.version:
        registry.promote_champion(model, champion, {"rollout.restored_by": plan.run_id})
    if plan.strategy != "restore" and ending.status == ABORTED:
        registry.abort_version(model, plan.version, ending.reason, ending.numbers)
        _record(plan, services, "aborted",
                f"v{plan.version} aborted, insufficient evidence: {ending.reason}",
                verdict=NO_EVIDENCE)  # fmt: skip
    elif plan.strategy != "restore":
        registry.reject_version(model, plan.version, ending.reason, ending.numbers)
        _record(plan, services, "rejected", f"v{plan.version} rejected: {ending.reason}",
                verdict="fail")  # fmt: skip
    note = run_note_text(plan, ending.headline, services.audit)
    return Rollback(restored, ending, note)


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


def rollout_ending(plan: RolloutPlan, failed_tasks: Sequence[str], audit: AuditLog) -> Ending:
    """The last stopping record of the run: a failing verdict or check (rejected) or a step
    stopped without evidence (aborted), with its summary and numbers; else the failed tasks
    (rejected)."""
    records = [r for r in audit.rows(run_id=plan.run_id) if r["verdict"] in ("fail", NO_EVIDENCE)]
    if records:
        last = records[-1]
        where = "/".join(p for p in (last["target"], last["step"]) if p)
        status = ABORTED if last["verdict"] == NO_EVIDENCE else REJECTED
        return Ending(status, f"{where}: {last['summary']}", last["details"])
    return Ending(REJECTED, f"task(s) failed: {', '.join(failed_tasks) or 'unknown'}", None)


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
