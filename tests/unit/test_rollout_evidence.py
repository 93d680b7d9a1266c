"""No evidence is not a bad model: a step short of the challenger's samples is inconclusive
*without evidence*, waits up to its limit, then aborts the rollout; a step that had the
evidence and failed (or stayed undecided) rejects the challenger as before. The window
says how many mirrored copies the gateway dropped."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import numpy as np
import pandas as pd
import pytest

from yieldops.rollout import flow
from yieldops.rollout.analysis import Check, Verdict, judge
from yieldops.rollout.plan import RolloutPlan, StepTiming
from yieldops.rollout.thresholds import Thresholds
from yieldops.rollout.window import StepWindow, dropped_per_version, judge_window
from yieldops.serving.predlog import PredictionTable, dropped_copies, dropped_row

T0 = datetime(2026, 12, 7, 12, 0, tzinfo=timezone.utc)
WINDOW = StepWindow(champion=1, challenger=2, since=T0)


def check(name: str, verdict: Verdict, too_few: bool = False) -> Check:
    return Check(name, verdict, {"n": 1}, name, too_few_samples=too_few)


def test_checks_short_of_samples_alone_are_no_evidence():
    step = judge([check("latency", Verdict.PASS), check("accuracy", Verdict.INCONCLUSIVE, True)])
    assert step.verdict is Verdict.INCONCLUSIVE and step.no_evidence
    assert step.summary == "inconclusive, no evidence (too few samples: accuracy; pass: latency)"
    assert step.to_dict()["no_evidence"] is True


def test_an_undecided_check_is_evidence_and_a_failing_one_decides():
    undecided = judge(
        [check("latency", Verdict.INCONCLUSIVE), check("accuracy", Verdict.INCONCLUSIVE, True)]
    )
    assert undecided.verdict is Verdict.INCONCLUSIVE and not undecided.no_evidence
    assert undecided.summary == "inconclusive (inconclusive: latency; too few samples: accuracy)"
    failed = judge([check("shift", Verdict.FAIL), check("accuracy", Verdict.INCONCLUSIVE, True)])
    assert failed.verdict is Verdict.FAIL and not failed.no_evidence


def test_a_window_without_a_single_challenger_sample_has_no_evidence():
    keys = [f"LOT1:W1:{i}:0" for i in range(400)]
    rows = pd.DataFrame(
        {
            "request_id": [f"r{i // 4}" for i in range(400)],
            "time": T0,
            "die_key": keys,
            "version": 1,
            "served": True,
            "probability": np.linspace(0.01, 0.99, 400),
            "latency_ms": 2.0,
            "error": None,
        }
    )
    labels = pd.Series(1, index=keys, name="good")
    verdict = judge_window(rows, WINDOW, labels, Thresholds(min_samples=50), True)
    assert verdict.no_evidence, verdict.summary
    assert all(c.too_few_samples for c in verdict.checks)
    assert "challenger_n 0" in next(c.reason for c in verdict.checks if c.name == "latency")


def test_the_window_counts_the_dropped_copies_of_its_versions_since_it_began(tmp_path):
    url = f"sqlite:///{tmp_path / 'predictions.db'}"
    assert dropped_per_version(url, WINDOW) == {1: 0, 2: 0}  # no table yet: nothing recorded
    table = PredictionTable(url)
    rows = [
        {**dropped_row(2, "challenger", 8, "backlog"), "time": T0 - timedelta(seconds=1)},
        {**dropped_row(2, "challenger", 8, "backlog"), "time": T0},
        {**dropped_row(2, "challenger", 3, "not_loaded"), "time": T0 + timedelta(seconds=1)},
        {**dropped_row(1, "champion", 5, "backlog"), "time": T0 + timedelta(seconds=1)},
        {**dropped_row(3, "challenger", 9, "backlog"), "time": T0 + timedelta(seconds=1)},
    ]
    try:
        assert table.write(rows, dropped_copies) == 0
    finally:
        table.close()
    assert dropped_per_version(url, WINDOW) == {1: 5, 2: 11}


def plan(max_step_seconds: float = 30.0) -> RolloutPlan:
    return RolloutPlan(
        product="P", model="yield-P", version=2, champion=1, strategy="canary", steps=(),
        targets=("t",), timing=StepTiming(10, max_step_seconds, 1), thresholds=Thresholds(),
        require_approval=False, offline_check=False, dag_id="model_rollout", run_id="r",
        triggered_by="test",
    )  # fmt: skip


NO_EVIDENCE = [check("accuracy", Verdict.INCONCLUSIVE, True)]
UNDECIDED = [check("latency", Verdict.INCONCLUSIVE)]


@pytest.mark.parametrize(
    ("checks", "elapsed", "action", "reason"),
    [
        ([check("latency", Verdict.PASS)], 12.0, flow.PASSED, "pass ("),
        ([check("latency", Verdict.FAIL)], 12.0, flow.REJECT, "fail ("),
        (NO_EVIDENCE, 12.0, flow.WAIT, "inconclusive after 12 s"),
        (UNDECIDED, 12.0, flow.WAIT, "inconclusive after 12 s"),
        (NO_EVIDENCE, 30.0, flow.ABORT, "insufficient evidence after 30 s (limit 30 s)"),
        (UNDECIDED, 31.0, flow.REJECT, "still inconclusive after 31 s (limit 30 s)"),
    ],
)
def test_a_step_passes_waits_rejects_or_aborts(checks, elapsed, action, reason):
    judged = flow.StepJudgement(judge(checks), elapsed, {"challenger v2": 990})
    decision = flow.decide_step(plan(), judged)
    assert decision.action == action
    assert decision.reason.startswith(reason)
    assert decision.reason.endswith("; mirrored copies dropped: challenger v2 990 dies")
    assert decision.audit_verdict == ("no_evidence" if action == flow.ABORT else "fail")
