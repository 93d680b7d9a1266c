"""Triggers: the waiting half of deferrable sensors, run in the triggerer."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TaskSkippedEvent, TriggerEvent

from yieldops_airflow.landing import pending_keys

# How soon a waiting sensor notices a queued run and gives way to it.
GIVE_WAY_CHECK_SECONDS = 5.0
GAVE_WAY_KEY = "gave_way_to_queued_runs"


class NewStdfFilesTrigger(BaseTrigger):
    """Fires once the landing zone holds files the ledger has not finished, or gives way.

    The DAG runs one at a time, so a run triggered by hand (or any other queued run of
    ``dag_id``) would wait behind this one for files that may never come: as soon as one
    is queued, the wait ends here, in the triggerer, with the task skipped (no worker
    needed); the number of queued runs goes to XCom ``GAVE_WAY_KEY`` for the run's note.
    Queued runs are counted every ``GIVE_WAY_CHECK_SECONDS``; the landing zone is listed
    every ``poke_interval``. Both checks run in a worker thread, so the triggerer's event
    loop never blocks.
    """

    def __init__(self, dag_id: str, poke_interval: float = 30.0) -> None:
        super().__init__()
        self.dag_id = dag_id
        self.poke_interval = poke_interval

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{__name__}.{type(self).__name__}",
            {"dag_id": self.dag_id, "poke_interval": self.poke_interval},
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        clock = asyncio.get_running_loop().time
        next_listing = clock()
        while True:
            if queued := await asyncio.to_thread(queued_runs, self.dag_id):
                self.log.info("%d run(s) of %s queued: giving way", queued, self.dag_id)
                yield TaskSkippedEvent(xcoms={GAVE_WAY_KEY: queued})
                return
            if clock() >= next_listing:
                if keys := await asyncio.to_thread(pending_keys):
                    self.log.info("%d landed file(s) to ingest, e.g. %s", len(keys), keys[:3])
                    yield TriggerEvent({"pending": keys})
                    return
                next_listing = clock() + self.poke_interval
            await asyncio.sleep(min(GIVE_WAY_CHECK_SECONDS, self.poke_interval))


def queued_runs(dag_id: str) -> int:
    """Runs of ``dag_id`` waiting for a slot, asked through the Task SDK's channel to its
    supervisor (the triggerer serves it too, as for the standard provider's triggers)."""
    from airflow.sdk import DagRunState
    from airflow.sdk.execution_time.task_runner import RuntimeTaskInstance

    return RuntimeTaskInstance.get_dr_count(dag_id=dag_id, states=[DagRunState.QUEUED.value])


class StepSamplesTrigger(BaseTrigger):
    """Fires when a rollout step has run ``min_seconds`` and both versions scored at least
    ``min_requests`` requests since ``since``, or once ``max_seconds`` have passed (the
    event says which). Counts come from the gateway's prediction log, read in a thread."""

    def __init__(
        self,
        log_url: str,
        champion: int,
        challenger: int,
        since: str,
        min_requests: int,
        min_seconds: float,
        max_seconds: float,
        poll_seconds: float = 5.0,
    ) -> None:
        super().__init__()
        self.log_url = log_url
        self.champion = champion
        self.challenger = challenger
        self.since = since
        self.min_requests = min_requests
        self.min_seconds = min_seconds
        self.max_seconds = max_seconds
        self.poll_seconds = poll_seconds

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{__name__}.{type(self).__name__}",
            {
                "log_url": self.log_url,
                "champion": self.champion,
                "challenger": self.challenger,
                "since": self.since,
                "min_requests": self.min_requests,
                "min_seconds": self.min_seconds,
                "max_seconds": self.max_seconds,
                "poll_seconds": self.poll_seconds,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        from datetime import datetime, timezone

        from yieldops.rollout.window import StepWindow, requests_per_version

        since = datetime.fromisoformat(self.since)
        window = StepWindow(self.champion, self.challenger, since)
        while True:
            counts = await asyncio.to_thread(requests_per_version, self.log_url, window)
            elapsed = (datetime.now(timezone.utc) - since).total_seconds()
            enough = min(counts.values()) >= self.min_requests
            if (enough and elapsed >= self.min_seconds) or elapsed >= self.max_seconds:
                self.log.info("step window: %s requests per version after %.0f s", counts, elapsed)
                yield TriggerEvent(
                    {
                        "enough": enough,
                        "elapsed": elapsed,
                        "requests": {str(v): n for v, n in counts.items()},
                    }
                )
                return
            await asyncio.sleep(self.poll_seconds)
