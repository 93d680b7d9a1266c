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
    """Judges a rollout step on its prediction-log window (``flow.decide_step``).

    pass: returns the verdict. inconclusive: defers for another step duration and judges
    again, until the step's time limit. fail, or still inconclusive at the limit: routes the
    target back to the champion before anything else (the rollback clock starts at the
    verdict), then fails the task, which triggers the DAG's rollback task; that rejects the
    challenger, or aborts the rollout when the step never had the evidence to judge it.
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
            for check in judged.verdict.checks:
                self.log.info("%s: %s: %s", check.name, check.verdict.value, check.reason)
            decision = flow.decide_step(plan, judged)
            if decision.action == flow.PASSED:
                return judged.to_dict()
            if decision.action == flow.WAIT:
                self.log.info("%s: waiting longer", decision.reason)
                self.defer(
                    trigger=step_trigger(
                        plan, step, judged.elapsed_seconds + plan.timing.step_seconds
                    ),
                    method_name="execute",
                )
            flow.roll_back_step(plan, step, judged, decision, decided_at, services)
        raise AirflowFailException(decision.reason)
