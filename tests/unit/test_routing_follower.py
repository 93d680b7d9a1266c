"""Following the persisted routing table (the gateway's workers share it through its file):
the follower alone with a recording ``adopt``, then two in-process gateways on one file."""

from __future__ import annotations

import asyncio
import functools
import json
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression

from yieldops.serving.app import Gateway
from yieldops.serving.follow import RoutingFollower
from yieldops.serving.routing import Routing, load_routing, save_routing
from yieldops.serving.settings import GatewaySettings

CANARY = Routing(champion=1, challenger=2, mode="canary", weight=25)


class Worker:
    """What the follower steers: the table served, and every table it was asked to adopt."""

    def __init__(self, serving: Routing | None = None, fails: bool = False) -> None:
        self.serving = serving
        self.fails = fails
        self.adopted: list[Routing] = []

    async def adopt(self, routing: Routing) -> None:
        self.adopted.append(routing)
        if self.fails:
            raise LookupError("version 2 does not load")
        self.serving = routing


def follower(path: Path, worker: Worker, retry_seconds: float = 3600.0) -> RoutingFollower:
    return RoutingFollower(path, lambda: worker.serving, worker.adopt, retry_seconds=retry_seconds)


def checks(following: RoutingFollower, times: int = 1) -> list[bool]:
    async def run() -> list[bool]:
        return [await following.check() for _ in range(times)]

    return asyncio.run(run())


def test_each_change_of_the_file_is_adopted_once(tmp_path):
    path = tmp_path / "routing.json"
    worker = Worker(Routing(champion=1))
    following = follower(path, worker)
    assert checks(following) == [False]  # no file yet: nothing to follow
    save_routing(path, CANARY)
    assert checks(following, 3) == [True, False, False]
    rolled_back = CANARY.rolled_back()
    save_routing(path, rolled_back)
    assert checks(following, 2) == [True, False]
    assert worker.adopted == [CANARY, rolled_back]


def test_the_table_already_served_is_not_adopted_again(tmp_path):
    path = tmp_path / "routing.json"
    worker = Worker(CANARY)
    following = follower(path, worker)
    save_routing(path, CANARY)  # this worker's own change, read back
    path.write_text(json.dumps(CANARY.to_dict()))  # the same table, other bytes
    assert checks(following, 2) == [False, False]
    assert worker.adopted == []


def test_a_file_that_holds_no_table_or_cannot_be_read_is_ignored_until_valid(tmp_path, caplog):
    path = tmp_path / "routing.json"
    worker = Worker(Routing(champion=1))
    following = follower(path, worker)
    for broken in ('{"champion": 1, "mo', "null", '{"champion": 1, "mode": "sideways"}'):
        path.write_text(broken)
        assert checks(following, 2) == [False, False]
    path.unlink()
    path.mkdir()  # unreadable as a file
    assert checks(following, 2) == [False, False]
    path.rmdir()
    assert worker.adopted == []
    assert len([r for r in caplog.records if "holds no routing table" in r.message]) == 3
    assert len([r for r in caplog.records if "cannot read" in r.message]) == 1
    save_routing(path, CANARY)
    assert checks(following) == [True]
    assert worker.adopted == [CANARY]


def test_a_table_that_cannot_be_served_is_retried_and_a_newer_one_tried_at_once(tmp_path):
    path = tmp_path / "routing.json"
    worker = Worker(Routing(champion=1), fails=True)
    save_routing(path, CANARY)
    assert checks(follower(path, worker, retry_seconds=0.0), 2) == [False, False]
    assert worker.adopted == [CANARY, CANARY]  # retried: it may load later

    worker.adopted.clear()
    following = follower(path, worker)  # the next try is an hour away
    assert checks(following, 2) == [False, False]
    assert worker.adopted == [CANARY]
    assert worker.serving == Routing(champion=1)  # still serving its previous table
    worker.fails = False
    shadow = Routing(champion=1, challenger=2, mode="shadow")
    save_routing(path, shadow)  # a newer table does not wait for that hour
    assert checks(following) == [True]
    assert worker.serving == shadow


def _model() -> LogisticRegression:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.normal(size=(50, 2)), columns=["test_100", "x"])
    return LogisticRegression().fit(frame, (frame["test_100"] > 0).astype(int))


def load_version(model: LogisticRegression, version: int) -> LogisticRegression:
    if version == 3:
        raise LookupError("no version 3")
    return model


def test_two_gateway_workers_serve_the_table_either_one_writes(tmp_path):
    """Two workers of one gateway (in one event loop here): a change through one reaches the
    other through the file, which is written once, by the worker that changed it."""
    settings = GatewaySettings(
        routing_path=tmp_path / "routing.json",
        log_url=f"sqlite:///{tmp_path / 'predictions.db'}",
        initial_champion=1,
        mirror_processes=0,
        workers=2,
    )
    loader = functools.partial(load_version, _model())

    async def scenario() -> None:
        one, two = Gateway(settings, loader), Gateway(settings, loader)
        await one.start()
        await two.start()
        try:
            await until(lambda: one.current is not None and two.current is not None)
            await one.apply(CANARY)
            written = settings.routing_path.stat()
            await until(lambda: two.current is not None and two.current.routing == CANARY)
            assert set(two.current.models) == {1, 2}  # loaded before the swap
            await asyncio.sleep(0.2)  # several polls of both followers: nobody writes again
            assert settings.routing_path.stat() == written

            await two.apply(CANARY.rolled_back())
            await until(lambda: one.current.routing == CANARY.rolled_back())
            # A version this worker cannot load: it keeps its table, the writer serves it.
            with_three = Routing(champion=1, challenger=3, mode="shadow")
            save_routing(settings.routing_path, with_three)
            await asyncio.sleep(0.2)
            assert one.current.routing == two.current.routing == CANARY.rolled_back()
            assert load_routing(settings.routing_path) == with_three
        finally:
            await one.stop()
            await two.stop()

    asyncio.run(scenario())


async def until(condition, timeout: float = 60.0) -> None:
    """Waits for ``condition`` (polled; a bound for a stuck test, not a timing claim)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition never held"
        await asyncio.sleep(0.01)
