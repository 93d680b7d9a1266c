"""One routing table for every worker of a gateway (``workers > 1``: uvicorn processes on
one port, each a whole gateway with its own snapshot).

The persisted table is what they share. A worker that changes the routing (``PUT
/v1/routing``, a rollback) writes the file as a single worker does; every worker reads
the file every ``POLL_SECONDS`` and, when its bytes changed and hold another table than
the one it serves, applies it as its own (models loaded first, then one snapshot swap),
without writing it back: the file is the table, so nothing echoes between workers. The
bytes are compared, not the file's mtime: two writes within one tick of the kernel's
clock would share an mtime. The file is a few hundred bytes, replaced by rename, so a
read sees a whole table.

A file that cannot be read or does not parse (written by hand, half of it) is ignored,
logged once, until a valid table replaces it. A table this worker cannot serve (a
version that does not load) leaves the worker on its previous snapshot, logged, and is
tried again every ``RETRY_SECONDS`` until it loads or the file changes.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from .routing import Routing

log = logging.getLogger(__name__)

# A rollback reaches every worker within this (plus its own switch: nothing to load).
POLL_SECONDS = 0.05
RETRY_SECONDS = 2.0


class RoutingFollower:
    """Follows the table at ``path``: ``adopt(table)`` whenever the file holds a table
    other than ``serving()``; returns once adopted, raises when it cannot be served."""

    def __init__(
        self,
        path: Path,
        serving: Callable[[], Routing | None],
        adopt: Callable[[Routing], Awaitable[object]],
        poll_seconds: float = POLL_SECONDS,
        retry_seconds: float = RETRY_SECONDS,
    ) -> None:
        self.path = Path(path)
        self.serving = serving
        self.adopt = adopt
        self.poll_seconds = poll_seconds
        self.retry_seconds = retry_seconds
        self._settled: bytes | None = None  # bytes whose table is served (or not a table)
        self._failed: tuple[bytes, float] | None = None  # bytes not served, and when to retry
        self._unreadable: str | None = None  # why the file could not be read, once logged

    async def run(self) -> None:
        while True:
            await self.check()
            await asyncio.sleep(self.poll_seconds)

    async def check(self) -> bool:
        """One look at the file; True when it held a new table and that is served now."""
        try:
            text = self.path.read_bytes()  # a few hundred bytes: no thread needed
        except FileNotFoundError:
            return False
        except OSError as exc:  # e.g. permissions: the task must live on to see it mended
            if str(exc) != self._unreadable:
                log.warning("cannot read %s (%s): serving the current table", self.path, exc)
            self._unreadable = str(exc)
            return False
        self._unreadable = None
        if text == self._settled or self._waiting(text):
            return False
        try:
            routing = Routing.from_dict(json.loads(text))
        except (ValueError, TypeError) as exc:  # JSON, UTF-8 and RoutingError are ValueErrors
            log.warning("%s holds no routing table (%s): serving the current one", self.path, exc)
            self._settled = text  # logged once; a valid table is other bytes
            return False
        if routing == self.serving():
            self._settled = text
            return False
        try:
            await self.adopt(routing)
        except Exception:
            log.exception(
                "could not serve routing %s from %s: serving the current one, again in %.0f s",
                routing.to_dict(), self.path, self.retry_seconds,
            )  # fmt: skip
            self._failed = (text, time.monotonic() + self.retry_seconds)
            return False
        self._settled, self._failed = text, None
        return True

    def _waiting(self, text: bytes) -> bool:
        """Whether ``text`` failed to be served and its next try is not due yet."""
        return self._failed is not None and (
            self._failed[0] == text and time.monotonic() < self._failed[1]
        )
