"""model_rollout promotes: canary steps, blue-green, restore; the Rollouts page after them.

The tests follow each other on one gateway, as versions would in production."""

from __future__ import annotations

from tests.integration.conftest import load_dag, task_states
from tests.integration.rollout.conftest import (
    FAST,
    MODEL,
    audit_rows,
    routing,
    traffic,
    version_tags,
)

from yieldops.training import registry


def test_a_good_challenger_goes_through_shadow_and_canary_to_champion(fab, gateway):
    champion, version = fab.version("champion"), fab.version("good")
    with traffic(fab, gateway) as box:
        run = load_dag("model_rollout").test(run_conf={**FAST, "model": MODEL, "version": version})
    states = task_states(run)
    assert run.state == "success", states
    for group in ("shadow", "step_1", "step_2", "step_3", "step_4"):
        assert states[f"pmic-local.{group}.analyse"] == "success"
    # planned out from the start: the slots past the plan's four steps, the other target
    assert states["pmic-local.step_5.set_routing"] == "skipped"
    assert states["pmic-local.step_6.analyse"] == "skipped"
    assert states["adc-local.offline_check"] == "skipped"
    assert states["adc-local.target_done"] == "success"
    assert states["promote"] == "success"
    assert states["rollback"] == "skipped"

    assert registry.alias_version(MODEL, registry.CHAMPION) == version
    assert version_tags(version)["rollout.status"] == "champion"
    assert version_tags(champion)["rollout.status"] == "retired"
    now = routing(gateway)
    assert (now["champion"], now["mode"]) == (version, "off")
    assert champion in now["loaded"]  # the old champion stays warm for a switch back
    assert box["report"].failed == 0, box["report"].errors

    verdicts = [(r["step"], r["verdict"]) for r in audit_rows(fab, run) if r["event"] == "verdict"]
    # An inconclusive judgement (too few samples yet) is followed by another of that step.
    last = dict(verdicts)
    assert list(last) == ["shadow", "canary-5", "canary-25", "canary-50", "canary-100"]
    assert set(last.values()) == {"pass"}
    assert {v for _, v in verdicts} <= {"pass", "inconclusive"}


def test_the_rollouts_page_shows_routing_steps_numbers_and_audit(fab, gateway, plugin_client):
    """After the good rollout: the plugin's page, as the Airflow UI shows it."""
    from yieldops_plugin import YieldopsPlugin

    entries = {e["target"]: e for e in plugin_client.get("/rollouts/api").json()}
    page = plugin_client.get("/rollouts/")
    pmic = entries["pmic-local"]
    assert pmic["routing"]["champion"] == fab.version("good")
    assert list(dict.fromkeys(s["step"] for s in pmic["steps"])) == [
        "shadow", "canary-5", "canary-25", "canary-50", "canary-100",
    ]  # fmt: skip
    assert pmic["steps"][0]["checks"]["agreement"]["verdict"] == "pass"
    assert pmic["current_step"] == "full"
    assert any(r["event"] == "promoted" for r in pmic["audit"])
    assert "routing_error" in entries["adc-local"]  # no connection defined for it here
    assert page.status_code == 200
    assert "<svg class='step-chart'" in page.text and "canary-50" in page.text
    assert YieldopsPlugin.external_views[0]["name"] == "Rollouts"


def test_blue_green_switches_all_traffic_at_once_then_promotes(fab, gateway):
    before, version = fab.version("good"), fab.version("good_again")
    with traffic(fab, gateway) as box:
        run = load_dag("model_rollout").test(
            run_conf={**FAST, "model": MODEL, "version": version, "strategy": "bluegreen"}
        )
    states = task_states(run)
    assert run.state == "success", states
    assert states["pmic-local.step_1.analyse"] == "success"
    assert states["pmic-local.step_2.set_routing"] == "skipped"
    switch = next(
        r for r in audit_rows(fab, run) if r["event"] == "routing" and r["step"] == "switch"
    )
    assert (switch["details"]["mode"], switch["details"]["live"]) == ("bluegreen", "challenger")
    assert registry.alias_version(MODEL, registry.CHAMPION) == version
    assert before in routing(gateway)["loaded"]
    assert box["report"].failed == 0, box["report"].errors


def test_restore_brings_back_an_earlier_champion_in_one_run(fab, gateway):
    first = fab.version("champion")
    run = load_dag("model_rollout").test(
        run_conf={**FAST, "model": MODEL, "version": first, "strategy": "restore"}
    )
    assert run.state == "success", task_states(run)
    assert registry.alias_version(MODEL, registry.CHAMPION) == first
    now = routing(gateway)
    assert (now["champion"], now["mode"]) == (first, "off")
    never_served = fab.version("erroring")
    refused = load_dag("model_rollout").test(
        run_conf={**FAST, "model": MODEL, "version": never_served, "strategy": "restore"}
    )
    assert refused.state == "failed" and task_states(refused)["plan"] == "failed"


def test_targets_follow_each_other_in_yaml_order_and_every_task_can_trigger_the_rollback():
    dag = load_dag("model_rollout")
    assert "adc-local.target_done" in dag.get_task("pmic-local.plan_target").upstream_task_ids
    done = dag.get_task("pmic-local.target_done")
    assert done.downstream_task_ids >= {"approval_required"}
    # it waits for every slot that may run, not only the last (skipped unless 6 steps)
    assert done.upstream_task_ids == {"pmic-local.offline_check"} | {
        f"pmic-local.{slot}.analyse" for slot in ("shadow", *(f"step_{i}" for i in range(1, 7)))
    }
    rollback = dag.get_task("rollback")
    assert rollback.upstream_task_ids == {
        t for t in dag.task_ids if t not in ("rollback", "promote")
    }
    assert dag.get_task("promote").downstream_task_ids == set()  # a leaf: decides the run state
