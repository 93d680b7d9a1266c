"""Triggers: the waiting half of deferrable sensors, run in the triggerer."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent


class NewStdfFilesTrigger(BaseTrigger):
    """Fires once the landing zone holds files the ledger has not finished.

    The check lists the zone and reads the ledger in a worker thread, so the
    triggerer's event loop never blocks.
    """

    def __init__(self, poke_interval: float = 30.0) -> None:
        super().__init__()
        self.poke_interval = poke_interval

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (f"{__name__}.{type(self).__name__}", {"poke_interval": self.poke_interval})

    async def run(self) -> AsyncIterator[TriggerEvent]:
        from yieldops_airflow.sensors import pending_keys

        while True:
            keys = await asyncio.to_thread(pending_keys)
            if keys:
                self.log.info("%d landed file(s) to ingest, e.g. %s", len(keys), keys[:3])
                yield TriggerEvent({"pending": keys})
                return
            await asyncio.sleep(self.poke_interval)


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
