"""Concurrent requests scored together (``serving.batching``): fewer model calls, each
request its own answers, one request's bad dies never failing the others."""

from __future__ import annotations

import asyncio
import threading

import numpy as np
import pandas as pd
import pytest
from sklearn.ensemble import RandomForestClassifier
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline

from yieldops.serving.batching import Batcher
from yieldops.serving.models import LoadedModel, Scored, score

COLUMNS = ["test_100", "test_101"]


class Recorded:
    """A score function that answers each die's ``v`` as its probability and records the
    dies of each call; ``gate`` holds a call until released (requests queue meanwhile)."""

    def __init__(self) -> None:
        self.calls: list[list[float]] = []
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()

    def __call__(self, model: LoadedModel, features) -> Scored:
        values = [f["v"] for f in features]
        self.calls.append(values)
        self.entered.set()
        self.gate.wait(timeout=30)
        if any(v is None for v in values):
            return Scored(None, "ValueError: a die without v", 0.0)
        return Scored(np.asarray(values, dtype=float), None, 0.0)


def dies(*values) -> list[dict]:
    return [{"v": v} for v in values]


async def queued_behind_a_call(batcher: Batcher, scorer: Recorded, model, requests) -> list:
    """Starts one request, holds its call, queues ``requests`` behind it, then releases."""
    scorer.gate.clear()
    first = asyncio.create_task(batcher.score(model, dies(0.5)))
    await asyncio.to_thread(scorer.entered.wait, 30)
    rest = [asyncio.create_task(batcher.score(model, request)) for request in requests]
    await asyncio.sleep(0)  # let them queue
    scorer.gate.set()
    return await asyncio.gather(first, *rest)


def test_requests_waiting_together_are_scored_in_one_call() -> None:
    scorer, model = Recorded(), LoadedModel(1, None, ())
    batcher = Batcher(scorer)
    requests = [dies(i / 10, i / 100) for i in range(1, 9)]

    answers = asyncio.run(queued_behind_a_call(batcher, scorer, model, requests))

    assert [len(call) for call in scorer.calls] == [1, 16]  # 9 requests, 2 calls
    assert answers[0].proba.tolist() == [0.5]
    for request, answer in zip(requests, answers[1:]):
        assert answer.error is None
        assert answer.proba.tolist() == [d["v"] for d in request]  # its own dies, in order


def test_a_call_holds_at_most_max_dies() -> None:
    scorer, model = Recorded(), LoadedModel(1, None, ())
    batcher = Batcher(scorer, max_dies=5)
    requests = [dies(0.1, 0.2), dies(0.3, 0.4), dies(0.5, 0.6), dies(*[0.7] * 9)]

    answers = asyncio.run(queued_behind_a_call(batcher, scorer, model, requests))

    assert [len(call) for call in scorer.calls] == [1, 4, 2, 9]  # a big request goes alone
    assert answers[4].proba.tolist() == [0.7] * 9


def test_bad_dies_fail_only_their_own_request() -> None:
    scorer, model = Recorded(), LoadedModel(1, None, ())
    requests = [dies(0.1), dies(0.2, None), dies(0.3)]

    answers = asyncio.run(queued_behind_a_call(Batcher(scorer), scorer, model, requests))

    assert [a.error for a in answers] == [None, None, "ValueError: a die without v", None]
    assert answers[1].proba.tolist() == [0.1] and answers[3].proba.tolist() == [0.3]
    assert [len(call) for call in scorer.calls] == [1, 4, 1, 2, 1]  # together, then each


def test_versions_are_scored_apart() -> None:
    scorer = Recorded()
    batcher = Batcher(scorer)
    one, two = LoadedModel(1, None, ()), LoadedModel(2, None, ())

    async def both() -> list[Scored]:
        return await asyncio.gather(batcher.score(one, dies(0.1)), batcher.score(two, dies(0.2)))

    answers = asyncio.run(both())

    assert sorted(scorer.calls) == [[0.1], [0.2]]
    assert [a.proba.tolist() for a in answers] == [[0.1], [0.2]]


@pytest.fixture(scope="module")
def pipeline() -> Pipeline:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.normal(size=(400, len(COLUMNS))), columns=COLUMNS)
    label = (frame["test_100"] - frame["test_101"] > 0).astype(int)
    forest = RandomForestClassifier(n_estimators=20, random_state=0)
    return Pipeline([("impute", SimpleImputer()), ("classify", forest)]).fit(frame, label)


def test_batched_answers_are_the_model_s_own(pipeline: Pipeline) -> None:
    """A real pipeline scored 40 requests at once gives each what it gives alone."""
    model = LoadedModel(1, pipeline, tuple(COLUMNS))
    rng = np.random.default_rng(1)
    requests = [
        [{"test_100": a, "test_101": b} for a, b in rng.normal(size=(n, 2))] for n in range(1, 41)
    ]
    requests[3][0]["test_101"] = None  # a missing feature, imputed
    calls: list[int] = []

    def counted(model: LoadedModel, features) -> Scored:
        calls.append(len(features))
        return score(model, features)

    async def concurrently() -> list[Scored]:
        batcher = Batcher(counted)
        return await asyncio.gather(*(batcher.score(model, r) for r in requests))

    answers = asyncio.run(concurrently())

    assert len(calls) < len(requests)
    for request, answer in zip(requests, answers):
        np.testing.assert_allclose(answer.proba, score(model, request).proba, rtol=0, atol=1e-12)
