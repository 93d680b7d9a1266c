"""Sensors: wait for STDF files to ingest without holding a worker slot."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from airflow.sdk import BaseSensorOperator

from yieldops.rollout.plan import RolloutPlan, RoutedStep
from yieldops_airflow.landing import pending_keys
from yieldops_airflow.notes import set_run_note
from yieldops_airflow.triggers import (
    GIVE_WAY_CHECK_SECONDS,
    NewStdfFilesTrigger,
    StepSamplesTrigger,
)


def waiting_files_text() -> str:
    """The landed files not complete yet (a tester still writing them), for the run note."""
    from yieldops_airflow.hooks import LandingZoneHook
    from yieldops_airflow.ingest import waiting_text
    from yieldops_airflow.runtime import open_ledger, runtime_settings

    settings = runtime_settings()
    with open_ledger(settings) as ledger:
        return waiting_text(ledger.waiting(LandingZoneHook(settings).get_conn().url).values())


class NewStdfFilesSensor(BaseSensorOperator):
    """Waits until the landing zone holds STDF files to ingest (``.stdf``, ``.std``, ``.gz``,
    ``.bz2``); checks once, then defers to ``NewStdfFilesTrigger``, which also ends the wait
    (skipped) as soon as another run of the DAG is queued. The run's note says so."""

    def __init__(self, *, poke_interval: float = 30.0, deferrable: bool = True, **kwargs) -> None:
        super().__init__(poke_interval=poke_interval, **kwargs)
        self.deferrable = deferrable

    def poke(self, context) -> bool:
        keys = pending_keys()
        self.log.info("%d landed file(s) to ingest", len(keys))
        return bool(keys)

    def execute(self, context) -> Any:
        if context["dag_run"].run_type == "manual":
            # Someone asked for this run (reprocess, dry run): take what is there now.
            self.log.info("manual run: not waiting for new files")
            return None
        if not self.deferrable:
            return super().execute(context)
        if not self.poke(context):
            note = " ".join(filter(None, [self.waiting_note(), waiting_files_text()]))
            set_run_note(self.dag_id, context["run_id"], note)
            self.defer(
                trigger=NewStdfFilesTrigger(dag_id=self.dag_id, poke_interval=self.poke_interval),
                method_name="execute_complete",
                timeout=timedelta(seconds=self.timeout),
            )
        return None

    def execute_complete(self, context, event: dict | None = None) -> None:
        self.log.info("landed file(s) to ingest: %s", (event or {}).get("pending"))

    def waiting_note(self) -> str:
        return (
            f"Waiting for new STDF files: looks every {seconds_text(self.poke_interval)}, "
            f"ends skipped after {seconds_text(self.timeout)} without any. "
            "A run triggered by hand does not wait for this one: every "
            f"{seconds_text(GIVE_WAY_CHECK_SECONDS)} this run looks for one, gives way "
            "(ends skipped) and the run triggered by hand starts."
        )


def seconds_text(seconds: float) -> str:
    return f"{seconds / 60:g} min" if seconds >= 120 else f"{seconds:g} s"


class RolloutStepSensor(BaseSensorOperator):
    """Waits, deferred, until a rollout step has run its duration and both versions have
    ``min_samples`` requests in the prediction log (or the step's time limit is reached;
    the analysis then decides whether that is enough)."""

    template_fields = ("rollout", "step")

    def __init__(self, *, rollout: Any, step: Any, **kwargs) -> None:
        super().__init__(**kwargs)
        self.rollout = rollout
        self.step = step

    def execute(self, context) -> Any:
        plan = RolloutPlan.from_dict(self.rollout)
        self.defer(
            trigger=step_trigger(plan, RoutedStep.from_dict(self.step), plan.timing.step_seconds),
            method_name="execute_complete",
        )

    def execute_complete(self, context, event: dict | None = None) -> dict:
        event = event or {}
        step = RoutedStep.from_dict(self.step)
        self.log.info(
            "%s/%s: %s requests per version after %.0f s%s",
            step.target,
            step.name,
            event.get("requests"),
            event.get("elapsed", 0),
            "" if event.get("enough") else " (fewer than wanted: the time limit came first)",
        )
        return event


def step_trigger(plan: RolloutPlan, step: RoutedStep, min_seconds: float) -> StepSamplesTrigger:
    """Wait from the step's start until ``min_seconds`` and enough samples, or its limit."""
    return StepSamplesTrigger(
        log_url=step.log_url,
        champion=plan.compared_champion,
        challenger=plan.version,
        since=step.since.isoformat(),
        min_requests=plan.thresholds.min_samples,
        min_seconds=min_seconds,
        max_seconds=plan.timing.max_step_seconds,
        poll_seconds=plan.timing.poll_seconds,
    )
