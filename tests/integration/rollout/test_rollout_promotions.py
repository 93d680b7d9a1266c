"""model_rollout promotes: canary steps, blue-green, restore; the Rollouts page after them;
the trigger form.

The tests follow each other on one gateway, as versions would in production."""

from __future__ import annotations

from tests.integration.conftest import load_dag, task_states
from tests.integration.rollout.conftest import (
    GOOD,
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
        run = load_dag("model_rollout").test(
            run_conf={**GOOD, "model": MODEL, "version": version, "canary_steps": [5, 25, 100]}
        )
    states = task_states(run)
    assert run.state == "success", states
    # the grid's step groups are the steps' names; canary-100 follows a skipped canary-50
    for group in ("shadow", "canary-5", "canary-25", "canary-100"):
        assert states[f"pmic-local.{group}.analyse"] == "success"
    # planned out from the start: the steps the plan does not take, the other target
    assert states["pmic-local.canary-50.set_routing"] == "skipped"
    assert states["pmic-local.switch.analyse"] == "skipped"
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
    assert list(last) == ["shadow", "canary-5", "canary-25", "canary-100"]
    assert set(last.values()) == {"pass"}
    assert {v for _, v in verdicts} <= {"pass", "inconclusive"}


def test_the_rollouts_page_compares_the_versions_step_by_step(fab, gateway, plugin_client):
    """After the good rollout: the plugin's page, as the Airflow UI shows it."""
    from mlflow import MlflowClient

    from yieldops.rollout.overview import STEP_HEADERS
    from yieldops_plugin import YieldopsPlugin

    entries = {e["target"]: e for e in plugin_client.get("/rollouts/api").json()}
    page = plugin_client.get("/rollouts/")
    pmic = entries["pmic-local"]
    assert pmic["routing"]["champion"] == fab.version("good")
    assert list(dict.fromkeys(s["step"] for s in pmic["steps"])) == [
        "shadow", "canary-5", "canary-25", "canary-100",
    ]  # fmt: skip
    assert pmic["steps"][0]["checks"]["agreement"]["verdict"] == "pass"
    assert pmic["current_step"] == "promote"
    assert any(r["event"] == "promoted" for r in pmic["audit"])
    # adc-local has no gateway connection here: said so, not a raw exception
    assert entries["adc-local"]["routing_state"] == "not configured"
    assert entries["adc-local"]["routing_error"].startswith(
        "target adc-local: gateway connection 'yieldops_gateway_adc' not configured: "
        "add an HTTP connection"
    )
    assert page.status_code == 200
    html = page.text
    assert "".join(f"<th>{h}</th>" for h in STEP_HEADERS) in html
    last = pmic["steps"][-1]["checks"]["accuracy"]
    side_by_side = (
        f"<td class='figure'>{last['challenger_accuracy']:.2%}</td>"
        f"<td class='figure'>{last['champion_accuracy']:.2%}</td>"
    )
    assert side_by_side in html
    assert f"<td class='figure'>{last['p_value']:.3g}</td>" in html
    assert "data-series='challenger accuracy'" in html
    assert "data-series='champion accuracy'" in html
    # each version links to its training run's wafer maps (a local store: no MLflow UI)
    for role, version in (
        ("challenger", fab.version("good")),
        ("champion", fab.version("champion")),
    ):
        run_id = MlflowClient().get_model_version(MODEL, str(version)).run_id
        wafer_maps = f"/yieldops/wafer-maps/{run_id}"
        assert {"role": role, "version": version, "links": {"Wafer maps": wafer_maps}} in (
            pmic["versions"]
        )
        assert f"href='{wafer_maps}'" in html
    assert "AirflowNotFoundException" not in html
    assert YieldopsPlugin.external_views[0]["name"] == "Rollouts"


def test_blue_green_switches_all_traffic_at_once_then_promotes(fab, gateway):
    before, version = fab.version("good"), fab.version("good_again")
    with traffic(fab, gateway) as box:
        run = load_dag("model_rollout").test(
            run_conf={**GOOD, "model": MODEL, "version": version, "strategy": "bluegreen"}
        )
    states = task_states(run)
    assert run.state == "success", states
    assert states["pmic-local.switch.analyse"] == "success"
    assert states["pmic-local.canary-5.set_routing"] == "skipped"
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
        run_conf={**GOOD, "model": MODEL, "version": first, "strategy": "restore"}
    )
    assert run.state == "success", task_states(run)
    assert registry.alias_version(MODEL, registry.CHAMPION) == first
    now = routing(gateway)
    assert (now["champion"], now["mode"]) == (first, "off")
    never_served = fab.version("erroring")
    refused = load_dag("model_rollout").test(
        run_conf={**GOOD, "model": MODEL, "version": never_served, "strategy": "restore"}
    )
    assert refused.state == "failed" and task_states(refused)["plan"] == "failed"


def test_targets_follow_each_other_in_yaml_order_and_every_task_can_trigger_the_rollback():
    dag = load_dag("model_rollout")
    assert "adc-local.target_done" in dag.get_task("pmic-local.plan_target").upstream_task_ids
    done = dag.get_task("pmic-local.target_done")
    assert done.downstream_task_ids >= {"approval_required"}
    # a step group per step the deployment offers, named as the audit log names the step;
    # target_done waits for every one that may run, not only the last
    steps = ("shadow", "canary-5", "canary-25", "canary-50", "canary-100", "switch")
    judged = {"pmic-local.offline_check"} | {f"pmic-local.{step}.analyse" for step in steps}
    assert done.upstream_task_ids == judged
    # a step starts after every earlier one: a skipped canary-50 does not start canary-100
    assert dag.get_task("pmic-local.canary-100.set_routing").upstream_task_ids == {"plan"} | (
        judged - {"pmic-local.canary-100.analyse", "pmic-local.switch.analyse"}
    )
    rollback = dag.get_task("rollback")
    assert rollback.upstream_task_ids == {
        t for t in dag.task_ids if t not in ("rollback", "promote")
    }
    assert dag.get_task("promote").downstream_task_ids == set()  # a leaf: decides the run state


def test_the_trigger_form_offers_the_models_targets_serve_first_targets_first():
    model = load_dag("model_rollout").params.get_param("model")
    # targets.yaml lists adc-local first: the demo's model, not the first in alphabetical order
    assert model.value == "yield-YO-7NM-ADC"
    assert model.schema["enum"] == ["yield-YO-7NM-ADC", "yield-YO-28NM-PMIC"]
    assert model.schema["values_display"]["yield-YO-28NM-PMIC"] == (
        "yield-YO-28NM-PMIC (targets: pmic-local)"
    )
