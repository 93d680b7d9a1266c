"""model_rollout rolls a bad challenger back: the live steps or the offline check stop it."""

from __future__ import annotations

import pytest
from tests.integration.conftest import load_dag, task_states
from tests.integration.rollout.conftest import (
    FAST,
    GOOD,
    LIVE_ONLY,
    MODEL,
    audit_rows,
    routing,
    target_gateway,
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
    allowed = {"rejected", "aborted"} if bad == "slow" else {"rejected"}
    assert tags["rollout.status"] in allowed
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
    # machine slows it most) is judged inconclusive: the step fails all the same, and when
    # it had no evidence at all the rollout aborts instead (its own test below).
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


def test_a_challenger_starved_of_mirrored_copies_is_aborted_never_rejected(fab):
    """A gateway that drops every mirrored copy (``mirror_max_pending=0``): the challenger
    scores no die in its shadow step, which waits to its limit and aborts the rollout. The
    champion serves on, and the version is tagged aborted with the reason, not rejected."""
    champion, version = fab.version("champion"), fab.version("good")
    starved = fab.home / "starved-gateway"
    conf = {**GOOD, "model": MODEL, "version": version, "offline_check": False,
            "max_step_seconds": 6}  # fmt: skip
    with target_gateway(fab, starved, mirror_max_pending=0) as url, traffic(fab, url) as box:
        run = load_dag("model_rollout").test(run_conf=conf)
        now = routing(url)
    assert run.state == "failed"
    states = task_states(run)
    assert states["pmic-local.shadow.analyse"] == "failed"
    assert states["rollback"] == "success"
    assert states["promote"] == "upstream_failed"
    assert (now["champion"], now["mode"]) == (champion, "off")
    assert box["report"].failed == 0, box["report"].errors

    tags = version_tags(version)
    assert tags["rollout.status"] == "aborted"
    assert "insufficient evidence" in tags["rollout.reason"]
    assert "mirrored copies dropped: challenger v" in tags["rollout.reason"]
    assert registry.alias_version(MODEL, registry.CHAMPION) == champion

    records = audit_rows(fab, run)
    assert "rejected" not in {r["event"] for r in records}
    verdict = [r for r in records if r["event"] == "verdict"][-1]
    assert verdict["details"]["no_evidence"] is True
    assert verdict["details"]["dropped_dies"][f"challenger v{version}"] > 0
    aborted = records[-1]
    assert (aborted["event"], aborted["verdict"]) == ("aborted", "no_evidence")
    assert aborted["summary"].startswith(f"v{version} aborted, insufficient evidence: ")
