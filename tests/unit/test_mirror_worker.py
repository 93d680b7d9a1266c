"""A mirror worker scores a window's copies in one model call per version, as the gateway
scores the requests waiting together; each copy still gets its own rows, and a copy whose
dies fail the call never fails the copies beside it."""

from __future__ import annotations

import json
from functools import cache

import numpy as np
import pandas as pd
from sklearn.ensemble import RandomForestClassifier
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline

from yieldops.serving.mirror import Copy, Mirror, MirrorWorker
from yieldops.serving.predlog import predictions
from yieldops.serving.settings import GatewaySettings

COLUMNS = ["test_100", "test_101"]
HUGE = 1e6


@cache
def pipeline() -> Pipeline:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.normal(size=(300, len(COLUMNS))), columns=COLUMNS)
    label = (frame["test_100"] > frame["test_101"]).astype(int)
    forest = RandomForestClassifier(n_estimators=10, random_state=0)
    return Pipeline([("impute", SimpleImputer()), ("classify", forest)]).fit(frame, label)


class FailsOnHuge:
    """The pipeline, but a call with any value past HUGE fails (a model's own refusal)."""

    feature_names_in_ = np.array(COLUMNS)
    classes_ = np.array([0, 1])

    def predict_proba(self, frame):
        if (np.asarray(frame, dtype=float) > HUGE).any():
            raise ValueError("a value past the model's range")
        return pipeline().predict_proba(frame)


def load(version: int):
    """Module level, so the worker's settings pickle."""
    return FailsOnHuge()


class Inbox:
    """A worker's pipe holding these copies, then closed."""

    def __init__(self, copies: list[Copy]) -> None:
        self.copies = list(reversed(copies))

    def next(self, deadline: float | None = None) -> Copy | None:
        if not self.copies:
            raise EOFError
        return self.copies.pop()


def copy_of(request_id: str, dies: list[dict]) -> Copy:
    body = json.dumps(dies).encode()
    return Copy(
        request_id, body, (Mirror("challenger", 2, tuple(range(len(dies)))),), frozenset({1, 2})
    )


def window(tmp_path, copies: list[Copy]):
    """Runs one window over ``copies``: (the worker's report, its rows by die key)."""
    settings = GatewaySettings(log_url=f"sqlite:///{tmp_path / 'predictions.db'}")
    worker = MirrorWorker(settings, load)
    reports: list = []
    try:
        assert not worker.run_window(Inbox(copies), reports.append)
        rows = {r["die_key"]: r for r in worker.table.rows(predictions)}
    finally:
        worker.table.close()
    (report,) = reports
    return report, rows


def dies(request: int, values: list[tuple[float, float]]) -> list[dict]:
    return [
        {"die_key": f"L1:W{request}:{i}:0", "test_100": a, "test_101": b}
        for i, (a, b) in enumerate(values)
    ]


def alone(die: dict) -> float:
    frame = pd.DataFrame([die])[COLUMNS]
    return float(pipeline().predict_proba(frame)[0, 1])


def test_a_window_of_copies_is_one_model_call_with_each_copy_s_own_rows(tmp_path):
    rng = np.random.default_rng(1)
    requests = [dies(r, [tuple(v) for v in rng.normal(size=(1 + r % 3, 2))]) for r in range(6)]

    report, rows = window(tmp_path, [copy_of(f"r{r}", d) for r, d in enumerate(requests)])

    assert [call[:4] for call in report.calls] == [(2, "challenger", 12, 0)]  # one call
    assert report.dies == 12
    for r, request in enumerate(requests):
        for die in request:
            stored = rows[die["die_key"]]
            assert (stored["request_id"], stored["served"], stored["error"]) == (
                f"r{r}",
                False,
                None,
            )
            assert abs(stored["probability"] - alone(die)) < 1e-12


def test_a_copy_that_fails_the_call_fails_alone(tmp_path):
    good, bad = dies(1, [(0.5, -0.5), (0.1, 0.2)]), dies(2, [(HUGE * 10, 0.0)])

    report, rows = window(tmp_path, [copy_of("good", good), copy_of("bad", bad)])

    assert sorted(call[2:4] for call in report.calls) == [(1, 1), (2, 0)]  # retried apart
    assert rows[bad[0]["die_key"]]["error"].startswith("ValueError: a value past")
    for die in good:
        assert rows[die["die_key"]]["error"] is None
        assert abs(rows[die["die_key"]]["probability"] - alone(die)) < 1e-12
