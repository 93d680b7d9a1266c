"""Scoring concurrent requests together: one model call for the dies of every request that
waits on the same version.

A scikit-learn pipeline's ``predict_proba`` costs about the same for 1 die as for 50 (a
fixed ~3.5 ms per call for the yield model), and many request threads inside it at once
fight over the GIL (the trees hand it back once each). So each loaded version gets one
scorer: requests queue their dies, the scorer takes everything queued (up to
``max_dies``) into one call in its own thread, and while that call runs the next requests
queue up for the next one. The batch grows with the load by itself; at low load a request
is scored at once. ``max_wait`` adds a short wait for company, only while requests arrive
together (the previous call held more than one).

A call that fails is retried request by request, so one request's bad dies never fail the
requests scored beside it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .models import LoadedModel, Scored

Features = Sequence[Mapping[str, Any]]
ScoreFunction = Callable[[LoadedModel, Features], Scored]


@dataclass
class _Request:
    features: Features
    answer: asyncio.Future[Scored] = field(repr=False)


@dataclass
class _Scorer:
    """The queue of one loaded version and the task that empties it."""

    model: LoadedModel
    waiting: list[_Request] = field(default_factory=list)
    task: asyncio.Task | None = None
    last_call_requests: int = 0


class Batcher:
    """Scores requests' dies through ``score`` (called in a thread), batched by version."""

    def __init__(self, score: ScoreFunction, max_dies: int = 1000, max_wait: float = 0.0) -> None:
        if max_dies < 1:
            raise ValueError(f"max_dies must be at least 1, not {max_dies}")
        self._score = score
        self.max_dies = max_dies
        self.max_wait = max_wait
        self._scorers: dict[int, _Scorer] = {}

    async def score(self, model: LoadedModel, features: Features) -> Scored:
        """P(good) of ``features`` by ``model``, scored with whatever else is waiting."""
        scorer = self._scorers.get(model.version)
        if scorer is None or scorer.model is not model:  # a version loaded again is new
            scorer = self._scorers[model.version] = _Scorer(model)
        request = _Request(features, asyncio.get_running_loop().create_future())
        scorer.waiting.append(request)
        if scorer.task is None or scorer.task.done():
            scorer.task = asyncio.create_task(self._drain(scorer))
        return await request.answer

    async def _drain(self, scorer: _Scorer) -> None:
        try:
            while scorer.waiting:
                if self.max_wait > 0 and scorer.last_call_requests > 1:
                    await asyncio.sleep(self.max_wait)
                batch = self._take(scorer)
                scorer.last_call_requests = len(batch)
                try:
                    answers = await self._score_batch(scorer.model, batch)
                except BaseException as exc:  # never leave a caller waiting
                    for request in batch:
                        _answer(request, exc)
                    raise
                for request, scored in zip(batch, answers):
                    _answer(request, scored)
        finally:
            if self._scorers.get(scorer.model.version) is scorer and not scorer.waiting:
                del self._scorers[scorer.model.version]  # an idle version holds no model

    def _take(self, scorer: _Scorer) -> list[_Request]:
        """The waiting requests, oldest first, up to ``max_dies`` dies (at least one request)."""
        taken, dies = 0, 0
        for request in scorer.waiting:
            if taken and dies + len(request.features) > self.max_dies:
                break
            taken, dies = taken + 1, dies + len(request.features)
        batch, scorer.waiting = scorer.waiting[:taken], scorer.waiting[taken:]
        return batch

    async def _score_batch(self, model: LoadedModel, batch: list[_Request]) -> list[Scored]:
        if len(batch) == 1:
            return [await asyncio.to_thread(self._score, model, batch[0].features)]
        together = [f for request in batch for f in request.features]
        scored = await asyncio.to_thread(self._score, model, together)
        if scored.proba is None:  # one request's dies may be to blame: each on its own
            return [await asyncio.to_thread(self._score, model, r.features) for r in batch]
        return scored.split([len(request.features) for request in batch])


def _answer(request: _Request, outcome: Scored | BaseException) -> None:
    if request.answer.done():  # the caller went away (a cancelled request)
        return
    if isinstance(outcome, asyncio.CancelledError):
        request.answer.cancel()
    elif isinstance(outcome, BaseException):
        request.answer.set_exception(outcome)
    else:
        request.answer.set_result(outcome)
