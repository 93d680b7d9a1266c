"""The demo's summary lines: readable (no raw dicts), wrapped at word boundaries, every
gated metric beside its no-skill baseline."""

from __future__ import annotations

import json

from mlflow.entities.model_registry import ModelVersion, ModelVersionTag

from yieldops.demo.summary import WIDTH, decision_lines, file_lines, version_lines
from yieldops.landing.ledger import CURATED, QUARANTINED, Ledger

LONG_REASON = (
    "canary-25: accuracy on 412 labelled dies 0.7712 against the champion's 0.8034 on the "
    "same dies (exact McNemar p=0.0031), error rate 0.0000, p95 latency 14.2 ms: fail"
)


def _check(kind: str, metric: str, value: float, no_skill: float | None) -> dict:
    return {"kind": kind, "metric": metric, "value": value, "no_skill": no_skill, "passed": True}


def _version(number: int, tags: dict[str, str]) -> ModelVersion:
    return ModelVersion(
        "yield-P", str(number), 0, tags=[ModelVersionTag(k, v) for k, v in tags.items()]
    )


def _words(lines: list[str]) -> list[str]:
    return " ".join(lines).split()


def test_versions_show_each_gated_metric_beside_its_baseline_and_wrap_whole_words():
    checks = [
        _check("absolute", "accuracy", 0.807, 0.7865),
        _check("lift", "accuracy", 0.807, 0.7865),
        _check("absolute", "roc_auc", 0.718, None),
    ]
    v2 = {
        "gate.passed": "true",
        "gate.checks": json.dumps(checks),
        "rollout.status": "rejected",
        "rollout.reason": LONG_REASON,
    }
    lines = version_lines("yield-P", [_version(2, v2), _version(1, {"gate.passed": "true"})])

    assert lines[:4] == [
        "  yield-P v1: gate passed, rollout not rolled out",
        "  yield-P v2: gate passed, rollout rejected",
        "    accuracy 0.8070 vs no skill 0.7865",
        "    roc_auc 0.7180 vs no skill n/a",
    ]
    why = lines[4:]
    assert len(why) > 1 and all(len(line) <= WIDTH for line in why)
    assert _words(why) == ["why:", *LONG_REASON.split()]


def test_decisions_name_version_target_and_step_and_skip_routing_changes():
    records = [
        {"version": 2, "target": "adc", "step": "canary-25", "event": "verdict", "summary": "x"},
        {"version": 2, "target": "adc", "step": None, "event": "routing", "summary": "y"},
        {"version": 2, "target": None, "step": None, "event": "rejected", "summary": "z"},
    ]
    assert decision_lines(records) == ["  v2 adc/canary-25: verdict: x", "  v2 -: rejected: z"]


def test_files_are_counted_by_status_with_each_quarantined_reason(tmp_path):
    ledger = Ledger(f"sqlite:///{tmp_path / 'ledger.db'}")
    for sha, status, reason in (("a", CURATED, None), ("b", QUARANTINED, LONG_REASON)):
        ledger.claim(sha, source_key=f"{sha}.stdf", zone_url="file:///x", size=1, run_id="r")
        ledger.finish(sha, "r", status, reason=reason)
    ledger.close()

    lines = file_lines(f"sqlite:///{tmp_path / 'ledger.db'}")

    assert lines[0] == "files: 1 curated, 1 quarantined"
    assert _words(lines[1:]) == ["quarantined", "b.stdf:", *LONG_REASON.split()]
    assert all(len(line) <= WIDTH and "{" not in line for line in lines)
