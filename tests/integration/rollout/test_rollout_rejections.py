"""model_rollout rolls a bad challenger back: the live steps or the offline check stop it."""

from __future__ import annotations

import pytest
from tests.integration.conftest import load_dag, task_states
from tests.integration.rollout.conftest import (
    FAST,
    LIVE_ONLY,
    MODEL,
    audit_rows,
    routing,
    traffic,
    version_tags,
)

from yieldops.training import registry


@pytest.mark.parametrize("bad", ["inaccurate", "slow", "erroring"])
def test_a_bad_challenger_is_rolled_back_at_the_first_step_and_the_champion_serves(
    fab, gateway, bad
):
    champion, version = fab.version("champion"), fab.version(bad)
    with traffic(fab, gateway) as box:
        run = load_dag("model_rollout").test(
            run_conf={**LIVE_ONLY, "model": MODEL, "version": version}
        )
    assert run.state == "failed"
    states = task_states(run)
    assert states["pmic-local.shadow.analyse"] == "failed"
    assert states["rollback"] == "success"
    assert states["promote"] == "upstream_failed"
    assert states["pmic-local.canary-5.set_routing"] == "upstream_failed"

    now = routing(gateway)
    assert (now["champion"], now["mode"]) == (champion, "off")
    assert registry.alias_version(MODEL, registry.CHAMPION) == champion
    tags = version_tags(version)
    assert tags["rollout.status"] == "rejected"
    assert "shadow" in tags["rollout.reason"]

    report = box["report"]
    assert report.sent > 0 and report.failed == 0, report.errors  # the champion kept serving

    records = audit_rows(fab, run)
    rollback = next(r for r in records if r["event"] == "rollback" and r["step"] == "shadow")
    # The rollback follows the failing verdict (how fast is measured in benchmarks, not here).
    failed_verdicts = [
        i for i, r in enumerate(records) if r["event"] == "verdict" and r["step"] == "shadow"
    ]
    assert failed_verdicts and failed_verdicts[-1] < records.index(rollback)
    assert rollback["details"]["seconds_from_verdict"] >= 0
    verdict = rollback["details"]["verdict"]
    failing = {c["name"] for c in verdict["checks"] if c["verdict"] == "fail"}
    # An inaccurate model shows in its answers: accuracy, and its shifted, disagreeing
    # predictions, whichever is decisive first.
    expected = {
        "inaccurate": {"accuracy", "shift", "agreement"},
        "slow": {"latency"},
        "erroring": {"error_rate"},
    }[bad]
    # A challenger too slow to score min_samples copies before max_step_seconds (a loaded
    # machine slows it most) is judged inconclusive, which fails the step all the same.
    too_slow_to_judge = bad == "slow" and verdict["verdict"] == "inconclusive"
    assert expected & failing or too_slow_to_judge, verdict["summary"]
    assert {r["event"] for r in records} >= {
        "offline_check",
        "routing",
        "verdict",
        "rollback",
        "rejected",
    }
    assert all(r["triggered_by"] and r["run_id"] == run.run_id for r in records)


def test_the_offline_check_stops_an_inaccurate_challenger_before_any_routing(fab, gateway):
    champion, version = fab.version("champion"), fab.version("inaccurate")
    before = routing(gateway)
    run = load_dag("model_rollout").test(run_conf={**FAST, "model": MODEL, "version": version})
    states = task_states(run)
    assert run.state == "failed"
    assert states["pmic-local.offline_check"] == "failed"
    assert states["pmic-local.shadow.set_routing"] == "upstream_failed"
    assert states["rollback"] == "success"
    assert routing(gateway) == before
    assert registry.alias_version(MODEL, registry.CHAMPION) == champion
    check = next(r for r in audit_rows(fab, run) if r["event"] == "offline_check")
    assert check["verdict"] == "fail" and "accuracy" in check["summary"]
