"""The rollout's steps (yieldops.rollout.flow) without Airflow: a real MLflow registry
(SQLite under tmp), a real gateway on loopback serving two small models, a real audit log.

The gateway serves ``yield-YO-28NM-PMIC`` for the shipped target ``pmic-local``; every test
starts from champion v1 alone, as a fresh registry does."""

from __future__ import annotations

import functools
import json
import time
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from tests.integration.conftest import free_port, serve_gateway

from yieldops.rollout import flow
from yieldops.rollout.audit import AuditLog
from yieldops.rollout.plan import RolloutPlan, RoutedStep, RunOrigin, offered_steps
from yieldops.serving.client import GatewayClient
from yieldops.serving.settings import GatewaySettings
from yieldops.training import registry

MODEL = "yield-YO-28NM-PMIC"
TARGET = "pmic-local"
TOKEN = "rollout-flow-test-token"  # a throwaway token of a gateway on loopback, not a secret
OFFERED = offered_steps([5, 25, 50, 100])
ORIGIN = RunOrigin("model_rollout", "manual__rollout_flow", "manual run by tester")
FORM = {
    "model": MODEL,
    "version": None,
    "strategy": "canary",
    "canary_steps": [5, 25],
    "step_seconds": 2,
    "max_step_seconds": 1,
    "poll_seconds": 0.5,
    "min_samples": 60,
    "thresholds": {"alpha": 0.05},
    "targets": None,
    "offline_check": False,
    "require_approval": False,
}


def load_model(models: dict, version: int):
    """The gateway's loader: module level, so a partial of it pickles into the mirror worker."""
    if version not in models:
        raise LookupError(f"no version {version}")
    return models[version]


@pytest.fixture(scope="module")
def gateway_url(tmp_path_factory):
    """A gateway on loopback serving v1, v2 and v3 (the same small model)."""
    home = tmp_path_factory.mktemp("gateway")
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.normal(size=(100, 2)), columns=["test_100", "test_101"])
    model = Pipeline([("classify", LogisticRegression())]).fit(frame, frame["test_100"] > 0)
    settings = GatewaySettings(
        model_name=MODEL,
        routing_path=home / "routing.json",
        log_url=f"sqlite:///{home / 'predictions.db'}",
        admin_token=TOKEN,
        initial_champion=1,
        log_flush_seconds=0.05,
    )
    loader = functools.partial(load_model, dict.fromkeys((1, 2, 3), model))
    with serve_gateway(settings, loader) as (client, _):
        yield str(client.base_url)


@pytest.fixture
def gateway(gateway_url) -> GatewayClient:
    """The gateway's admin client, champion v1 alone."""
    client = GatewayClient(gateway_url, TOKEN)
    client.update(champion=1, challenger=None, mode="off", weight=0, live="champion")
    return client


@pytest.fixture
def store(tmp_path, monkeypatch) -> str:
    """A real registry: ``MODEL`` v1 champion (served), v2 challenger, v3 never served."""
    import mlflow
    from mlflow import MlflowClient

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    uri = registry.use_tracking_uri(registry.default_tracking_uri(tmp_path))
    client = MlflowClient()
    client.create_registered_model(MODEL)
    for _ in range(3):
        client.create_model_version(MODEL, source=(tmp_path / "model").as_uri())
    registry.promote_champion(MODEL, 1)
    client.set_registered_model_alias(MODEL, registry.CHALLENGER, "2")
    yield uri
    mlflow.set_tracking_uri(None)


@pytest.fixture
def services(gateway, store, tmp_path):
    audit = AuditLog(f"sqlite:///{tmp_path / 'rollout.db'}")
    log_url = f"sqlite:///{tmp_path / 'predictions.db'}"
    yield flow.RolloutServices(
        gateway=lambda target: (gateway, log_url),
        audit=audit,
        curated_dir=tmp_path / "curated",
        use_registry=functools.partial(registry.use_tracking_uri, store),
    )
    audit.close()


def plan(services, form=None, event=None) -> RolloutPlan:
    return flow.plan_rollout(form or FORM, event or {}, OFFERED, ORIGIN, services)


def events(services) -> list[tuple[str | None, str]]:
    return [(r["target"], r["event"]) for r in services.audit.rows(run_id=ORIGIN.run_id)]


# -- the plan ------------------------------------------------------------------------------


def test_the_plan_takes_the_challenger_and_the_forms_steps_and_travels_as_json(services):
    planned = plan(services)
    assert (planned.model, planned.product, planned.version, planned.champion) == (
        MODEL, "YO-28NM-PMIC", 2, 1,
    )  # fmt: skip
    assert planned.step_names == ["shadow", "canary-5", "canary-25"]
    assert planned.targets == (TARGET,)
    assert (planned.thresholds.alpha, planned.thresholds.min_samples) == (0.05, 60)
    # the step limit is never shorter than a step
    assert planned.timing.max_step_seconds == planned.timing.step_seconds == 2
    as_json = json.loads(json.dumps(planned.to_dict()))
    assert RolloutPlan.from_dict(as_json) == planned
    assert (as_json["model"], as_json["version"]) == (MODEL, 2)  # the approval form reads them


def test_the_asset_events_extra_names_the_version_and_the_product(services):
    event = {"model": MODEL, "version": 3, "product": "YO-28NM-PMIC", "source": "t/r"}
    planned = plan(services, {**FORM, "model": "", "strategy": "bluegreen"}, event)
    assert (planned.version, planned.product) == (3, "YO-28NM-PMIC")
    assert planned.step_names == ["shadow", "switch"]


@pytest.mark.parametrize(
    "form, message",
    [
        ({"version": 1}, "yield-YO-28NM-PMIC v1 is already the champion"),
        ({"version": 3, "strategy": "restore"}, "v3 never served: restore only earlier"),
        ({"version": 9}, "has no version 9; versions: v1 \\(champion\\), v2 \\(challenger\\)"),
        ({"thresholds": {"alpha": "0.05"}}, "threshold alpha: '0.05' is not a number"),
        ({"canary_steps": [5, 30]}, "step.s. canary-30 not offered"),
        ({"targets": ["adc-local"]}, "no target adc-local for YO-28NM-PMIC"),
        ({"model": ""}, "no model chosen"),
    ],
)
def test_a_plan_that_cannot_be_says_why(services, form, message):
    with pytest.raises((ValueError, LookupError), match=message):
        plan(services, {**FORM, **form})


def test_the_first_model_has_no_step_and_a_restore_none(services):
    from mlflow import MlflowClient

    MlflowClient().delete_registered_model_alias(MODEL, registry.CHAMPION)
    assert plan(services).steps == ()
    registry.promote_champion(MODEL, 3)
    restore = plan(services, {**FORM, "version": 1, "strategy": "restore"})
    assert restore.steps == () and restore.champion == 3


def test_a_target_outside_the_plan_skips_its_offline_check_and_every_step(services):
    planned = plan(services)
    assert planned.unplanned_steps(TARGET, OFFERED) == ["canary-50", "canary-100", "switch"]
    assert planned.unplanned_steps("adc-local", OFFERED) == OFFERED
    assert planned.skips_offline_check("adc-local") and not planned.skips_offline_check(TARGET)
    assert replace(planned, strategy="restore").skips_offline_check(TARGET)
    assert planned.path_of(TARGET) == "canary: shadow -> canary-5 -> canary-25"
    assert planned.path_of("adc-local") == f"adc-local is not a target of {MODEL}"


# -- steps -----------------------------------------------------------------------------------


def test_a_routed_step_changes_the_gateway_is_audited_and_travels_as_json(services, gateway):
    planned = plan(services)
    step = flow.route_step(planned, TARGET, "canary-5", services)
    now = gateway.routing()
    assert (now["mode"], now["weight"], now["challenger"]) == ("canary", 5, 2)
    assert (step.target, step.name, step.check_agreement) == (TARGET, "canary-5", False)
    assert RoutedStep.from_dict(json.loads(json.dumps(step.to_dict()))) == step
    [record] = services.audit.rows(run_id=ORIGIN.run_id)
    assert (record["event"], record["step"]) == ("routing", "canary-5")
    assert record["summary"] == "routing canary 5%: champion v1, challenger v2"
    assert record["triggered_by"] == ORIGIN.triggered_by


def test_the_offline_check_off_by_param_is_audited(services):
    result = flow.check_offline(plan(services), TARGET, services)
    assert result == {"passed": None, "reasons": ["off by param"]}
    assert events(services) == [(TARGET, "offline_check")]


def test_a_failed_step_goes_back_to_the_champion_at_once(services, gateway):
    planned = plan(services)
    step = flow.route_step(planned, TARGET, "shadow", services)
    verdict = flow.StepJudgement(_failed_verdict(), 3.0)
    decision = flow.StepDecision(flow.REJECT, "fail (agreement)")
    details = flow.roll_back_step(planned, step, verdict, decision, time.monotonic(), services)
    assert gateway.routing()["mode"] == "off" and details["routing"]["champion"] == 1
    assert details["verdict"]["elapsed_seconds"] == 3.0
    last = services.audit.rows(run_id=ORIGIN.run_id)[-1]
    assert (last["event"], last["verdict"], last["step"]) == ("rollback", "fail", "shadow")
    assert last["summary"].startswith("fail (agreement) -> back to champion v1 in ")


def _failed_verdict():
    from yieldops.rollout.analysis import Check, Verdict, judge

    return judge([Check("agreement", Verdict.FAIL, {"agreement": 0.5}, "agreement 50%")])


def _verdict_without_evidence():
    from yieldops.rollout.analysis import Check, Verdict, judge

    numbers = {"champion_n": 990, "challenger_n": 0, "min_samples": 60}
    reason = "too few samples (champion_n 990, challenger_n 0; need 60 each)"
    return judge([Check("latency", Verdict.INCONCLUSIVE, numbers, reason, too_few_samples=True)])


# -- the end ---------------------------------------------------------------------------------


def test_promotion_serves_the_new_champion_everywhere_then_moves_the_alias(services, gateway):
    planned = plan(services)
    flow.route_step(planned, TARGET, "shadow", services)
    promotion = flow.promote(planned, services)
    now = gateway.routing()
    assert (now["champion"], now["challenger"], now["mode"]) == (2, None, "off")
    assert registry.alias_version(MODEL, registry.CHAMPION) == 2
    assert (promotion.champion, promotion.previous) == (2, 1)
    assert promotion.note.startswith(f"{MODEL} v2 is champion (was v1; canary).\n- ")
    assert "- pmic-local/promote: routing off: champion v2" in promotion.note
    assert events(services)[-1] == (None, "promoted")


def test_a_rollback_restores_the_champion_and_rejects_the_version_with_the_failing_verdict(
    services, gateway
):
    from mlflow import MlflowClient

    planned = plan(services)
    step = flow.route_step(planned, TARGET, "shadow", services)
    verdict = flow.StepJudgement(_failed_verdict(), 3.0)
    summary = verdict.verdict.summary
    services.audit.record(flow.rollout_ref(planned), "verdict", summary, target=TARGET,
                          step=step.name, verdict="fail", details=verdict.to_dict())  # fmt: skip
    done = flow.roll_back(planned, ["pmic-local.shadow.analyse"], services)
    assert done.restored == [TARGET]
    assert gateway.routing()["mode"] == "off" and gateway.routing()["champion"] == 1
    assert done.reason == "pmic-local/shadow: fail (fail: agreement)"
    assert done.numbers["checks"][0]["numbers"] == {"agreement": 0.5}
    tags = MlflowClient().get_model_version(MODEL, "2").tags
    assert (tags["rollout.status"], tags["rollout.reason"]) == ("rejected", done.reason)
    assert registry.alias_version(MODEL, registry.CHAMPION) == 1
    assert done.note.startswith(f"Rolled back: {done.reason}.\n")


def test_a_step_without_evidence_aborts_the_rollout_and_never_rejects_the_version(
    services, gateway
):
    from mlflow import MlflowClient

    planned = plan(services)
    step = flow.route_step(planned, TARGET, "shadow", services)
    judged = flow.StepJudgement(_verdict_without_evidence(), 2.0, {"challenger v2": 990})
    decision = flow.decide_step(planned, judged)
    assert decision.action == flow.ABORT
    flow.roll_back_step(planned, step, judged, decision, time.monotonic(), services)
    assert gateway.routing()["mode"] == "off"  # the challenger is off the traffic at once
    done = flow.roll_back(planned, ["pmic-local.shadow.analyse"], services)
    assert done.ending.status == "aborted" and done.to_dict()["status"] == "aborted"
    assert done.reason.startswith("pmic-local/shadow: insufficient evidence after 2 s")
    assert "mirrored copies dropped: challenger v2 990 dies" in done.reason
    tags = MlflowClient().get_model_version(MODEL, "2").tags
    assert (tags["rollout.status"], tags["rollout.reason"]) == ("aborted", done.reason)
    assert "rollout.rejected_at" not in tags
    # never judged: it stays the challenger a later run may judge
    assert registry.alias_version(MODEL, registry.CHALLENGER) == 2
    records = services.audit.rows(run_id=ORIGIN.run_id)
    assert [(r["event"], r["verdict"]) for r in records[-2:]] == [
        ("rollback", "no_evidence"),
        ("aborted", "no_evidence"),
    ]
    assert "rejected" not in {r["event"] for r in records}
    assert done.note.startswith(f"Aborted, insufficient evidence: {done.reason}.\n")


def test_a_rollback_after_a_failed_promotion_gives_the_alias_back(services, gateway):
    planned = plan(services)
    flow.promote(planned, services)
    done = flow.roll_back(planned, ["promote"], services)
    assert registry.alias_version(MODEL, registry.CHAMPION) == 1
    assert gateway.routing()["champion"] == 1
    # no failing verdict recorded: the failed tasks are the reason
    assert done.reason == "task(s) failed: promote" and done.numbers is None


def test_a_restore_changes_only_what_the_rollout_changed_and_survives_a_dead_gateway(
    services, gateway
):
    planned = plan(services)
    assert not flow.restore(planned, TARGET, services)  # untouched: nothing to do
    dead = replace(services, gateway=lambda target: (GatewayClient(_nowhere(), TOKEN), ""))
    assert not flow.restore(planned, TARGET, dead)
    last = services.audit.rows(run_id=ORIGIN.run_id)[-1]
    assert last["summary"].startswith("could not restore routing: GET http://127.0.0.1:")


def _nowhere() -> str:
    """A loopback URL nothing listens on."""
    return f"http://127.0.0.1:{free_port()}"
