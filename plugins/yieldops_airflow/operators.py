"""Operators of the rollout whose work outlives one call (they defer while waiting)."""

from __future__ import annotations

import time
from typing import Any

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowFailException

from yieldops_airflow import rollout as steps
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
        verdict = steps.analyse_step(self.rollout, self.step)
        decided_at = time.monotonic()
        outcome = verdict["verdict"]
        if outcome == "pass":
            return verdict
        elapsed = steps.elapsed_seconds(self.step)
        if outcome == "inconclusive" and elapsed < self.rollout["max_step_seconds"]:
            self.log.info(
                "inconclusive after %.0f s: waiting longer (%s)", elapsed, verdict["summary"]
            )
            self.defer(
                trigger=step_trigger(
                    self.rollout, self.step, elapsed + self.rollout["step_seconds"]
                ),
                method_name="execute",
            )
        reason = verdict["summary"]
        if outcome == "inconclusive":
            limit = self.rollout["max_step_seconds"]
            reason = f"still inconclusive after {elapsed:.0f} s (limit {limit} s): {reason}"
        steps.roll_back_now(self.rollout, self.step, verdict, reason, decided_at)
        raise AirflowFailException(reason)
