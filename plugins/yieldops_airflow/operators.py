"""Operators of the rollout whose work outlives one call (they defer while waiting)."""

from __future__ import annotations

import time
from typing import Any

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowFailException

from yieldops.rollout import flow
from yieldops.rollout.plan import RolloutPlan, RoutedStep
from yieldops_airflow.rollout import rollout_services
from yieldops_airflow.sensors import step_trigger


class AnalyseStepOperator(BaseOperator):
    """Judges a rollout step on its prediction-log window.

    pass: returns the verdict. fail: routes the target back to the champion before
    anything else (the rollback clock starts at the verdict), then fails the task, which
    triggers the DAG's rollback task. inconclusive: defers for another step duration and
    judges again, until the step's time limit; still inconclusive then counts as a failure.
    """

    template_fields = ("rollout", "step")

    def __init__(self, *, rollout: Any, step: Any, **kwargs) -> None:
        super().__init__(**kwargs)
        self.rollout = rollout
        self.step = step

    def execute(self, context, event: dict | None = None) -> dict:
        plan, step = RolloutPlan.from_dict(self.rollout), RoutedStep.from_dict(self.step)
        # One audit log and gateway lookup for the judgement and an immediate rollback.
        with rollout_services() as services:
            judged = flow.judge_step(plan, step, services)
            decided_at = time.monotonic()
            reason = self.failure(plan, step, judged)
            if reason is None:
                return judged.to_dict()
            flow.roll_back_step(plan, step, judged, reason, decided_at, services)
        raise AirflowFailException(reason)

    def failure(
        self, plan: RolloutPlan, step: RoutedStep, judged: flow.StepJudgement
    ) -> str | None:
        """Why the step failed; None when it passed. Defers while an inconclusive step has
        time left."""
        for check in judged.verdict.checks:
            self.log.info("%s: %s: %s", check.name, check.verdict.value, check.reason)
        outcome, reason = judged.verdict.verdict.value, judged.verdict.summary
        if outcome == "pass":
            return None
        elapsed, limit = step.elapsed_seconds(), plan.timing.max_step_seconds
        if outcome == "inconclusive" and elapsed < limit:
            self.log.info("inconclusive after %.0f s: waiting longer (%s)", elapsed, reason)
            self.defer(
                trigger=step_trigger(plan, step, elapsed + plan.timing.step_seconds),
                method_name="execute",
            )
        if outcome == "inconclusive":
            return f"still inconclusive after {elapsed:.0f} s (limit {limit} s): {reason}"
        return reason
