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
