"""The rollout library without Airflow: plans, targets, the audit log, a step's window."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import numpy as np
import pandas as pd
import pytest

from yieldops.config import ConfigError
from yieldops.rollout.audit import AuditLog, RolloutRef, run_note
from yieldops.rollout.plan import MAX_STEPS_AFTER_SHADOW, offered_steps, plan_steps
from yieldops.rollout.targets import Target, load_targets, targets_by_model, targets_for
from yieldops.rollout.thresholds import Thresholds
from yieldops.rollout.window import (
    StepWindow,
    comparable_latencies,
    judge_window,
    lots_in,
    paired_answers,
    read_window,
    request_latencies,
    requests_per_version,
)
from yieldops.serving.predlog import PredictionLog

T0 = datetime(2026, 11, 26, 12, 0, tzinfo=timezone.utc)


# -- plans -----------------------------------------------------------------------------------


def test_canary_plan_is_shadow_then_the_weights():
    steps = plan_steps("canary", [5, 25, 50, 100])
    assert [s.name for s in steps] == ["shadow", "canary-5", "canary-25", "canary-50", "canary-100"]
    assert steps[0].routing["mode"] == "shadow" and steps[0].check_agreement
    assert steps[2].routing == {"mode": "canary", "weight": 25, "live": "champion"}


def test_bluegreen_plan_switches_at_once_and_restore_has_no_step():
    assert [s.routing["mode"] for s in plan_steps("bluegreen")] == ["shadow", "bluegreen"]
    assert plan_steps("bluegreen")[1].routing["live"] == "challenger"
    assert plan_steps("restore") == []


@pytest.mark.parametrize(
    "weights, message",
    [
        ([], "1 to"),
        (list(range(1, MAX_STEPS_AFTER_SHADOW + 2)), "1 to"),
        ([50, 25], "increase"),
        ([5, 5], "increase"),
        ([0, 50], "1-100"),
        ([5, 101], "1-100"),
    ],
)
def test_bad_canary_steps_are_refused_with_the_reason(weights, message):
    with pytest.raises(ValueError, match=message):
        plan_steps("canary", weights)


def test_an_unknown_strategy_is_refused():
    with pytest.raises(ValueError, match="strategy 'yolo'"):
        plan_steps("yolo")


# -- targets ---------------------------------------------------------------------------------


def test_the_shipped_targets_load_and_are_ordered_per_product():
    targets = load_targets()
    assert targets and len({t.name for t in targets}) == len(targets)
    assert [t.name for t in targets_for("YO-28NM-PMIC")] == ["pmic-local"]


def test_targets_for_keeps_yaml_order_and_refuses_unknown_names(tmp_path):
    path = tmp_path / "targets.yaml"
    path.write_text(
        "targets:\n"
        "  - {name: fab-a, product: P, conn_id: a, facilities: [FAB-A]}\n"
        "  - {name: fab-b, product: P, conn_id: b}\n"
        "  - {name: other, product: Q, conn_id: c}\n"
    )
    assert [t.name for t in targets_for("P", path=path)] == ["fab-a", "fab-b"]
    assert [t.name for t in targets_for("P", ["fab-b"], path=path)] == ["fab-b"]
    with pytest.raises(ConfigError, match="no target fab-z for P"):
        targets_for("P", ["fab-z"], path=path)


@pytest.mark.parametrize(
    "text, message",
    [
        ("targets:\n  - {name: Fab A, product: P, conn_id: a}\n", "targets.0.name"),
        ("targets:\n  - {name: a, product: P}\n", "targets.0.conn_id"),
        ("targets:\n  - {name: a, product: P, conn_id: a, colour: red}\n", "colour"),
        ("targets:\n  - {name: a, product: P, conn_id: a, recent_lots: 0}\n", "recent_lots"),
        (
            "targets:\n  - {name: a, product: P, conn_id: a}\n"
            "  - {name: a, product: Q, conn_id: b}\n",
            "unique",
        ),
        ("targets: [\n", "targets.yaml"),
    ],
)
def test_a_bad_targets_file_names_the_file_and_the_field(tmp_path, text, message):
    path = tmp_path / "targets.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message) as error:
        load_targets(path)
    assert str(path) in str(error.value)


# -- audit -----------------------------------------------------------------------------------


def test_the_audit_log_keeps_every_record_with_its_origin(tmp_path):
    audit = AuditLog(f"sqlite:///{tmp_path / 'audit' / 'rollout.db'}")
    ref = RolloutRef("yield-P", 3, 2, "model_rollout", "run-1", "asset event from x/y")
    audit.record(ref, "routing", "routing shadow", target="fab-a", step="shadow")
    audit.record(
        ref, "verdict", "fail (fail: latency)", target="fab-a", step="shadow", verdict="fail",
        details={"p95": 300.5},
    )  # fmt: skip
    audit.record(RolloutRef("yield-P", 4, 2, run_id="run-2"), "promoted", "v4 is champion")
    rows = audit.rows(run_id="run-1")
    assert [r["event"] for r in rows] == ["routing", "verdict"]
    assert rows[1]["details"] == {"p95": 300.5} and rows[1]["champion"] == 2
    assert rows[0]["triggered_by"] == "asset event from x/y" and rows[0]["time"] is not None
    assert run_note(rows) == "- fab-a/shadow: routing shadow\n- fab-a/shadow: fail (fail: latency)"
    with pytest.raises(ValueError, match="unknown audit event"):
        audit.record(ref, "guess", "?")
    audit.close()


def test_a_long_run_note_is_cut_to_the_limit():
    records = [{"target": "t", "step": "s", "summary": "x" * 300}] * 10
    assert len(run_note(records, limit=1000)) == 1000


# -- a step's window -------------------------------------------------------------------------


def _rows(champion_p, challenger_p, *, champion_ms=2.0, challenger_ms=2.0, errors=0, batch=4):
    """Prediction-log rows of dies scored by both versions, ``batch`` dies per request."""
    rows = []
    for i, (p_champion, p_challenger) in enumerate(zip(champion_p, challenger_p)):
        request, key = f"r{i // batch}", f"LOT1:W1:{i}:0"
        rows.append(_row(request, key, 1, True, p_champion, champion_ms + i % 3 * 0.1, None))
        error = "ValueError: NaN" if i < errors else None
        rows.append(
            _row(request, key, 2, False, None if error else p_challenger,
                 challenger_ms + i % 3 * 0.1, error)
        )  # fmt: skip
    return pd.DataFrame(rows)


def _row(request, key, version, served, probability, latency, error):
    return {
        "request_id": request,
        "time": T0,
        "die_key": key,
        "version": version,
        "served": served,
        "probability": probability,
        "latency_ms": latency,
        "error": error,
    }


WINDOW = StepWindow(champion=1, challenger=2, since=T0)
STRICT = Thresholds(min_samples=50)


def _labels(n, truth):
    return pd.Series(truth, index=[f"LOT1:W1:{i}:0" for i in range(n)], name="good")


def test_the_same_answers_pass_every_check():
    rng = np.random.default_rng(0)
    p = rng.uniform(0, 1, 800)
    truth = (p > 0.5).astype(int)
    verdict = judge_window(_rows(p, p), WINDOW, _labels(800, truth), STRICT, with_agreement=True)
    assert verdict.verdict.value == "pass", verdict.summary
    assert [c.name for c in verdict.checks] == [
        "error_rate", "latency", "accuracy", "shift", "agreement",
    ]  # fmt: skip


def test_a_worse_challenger_fails_on_accuracy_against_the_same_labelled_dies():
    rng = np.random.default_rng(1)
    p = rng.uniform(0, 1, 800)
    truth = (p > 0.5).astype(int)
    flipped = np.where(rng.random(800) < 0.2, 1 - p, p)  # 20 % of answers turned around
    verdict = judge_window(_rows(p, flipped), WINDOW, _labels(800, truth), STRICT, False)
    failing = {c.name for c in verdict.checks if c.verdict.value == "fail"}
    assert "accuracy" in failing and "agreement" not in {c.name for c in verdict.checks}


def test_errors_and_slowness_fail_their_checks_with_one_latency_per_request():
    p = np.linspace(0.01, 0.99, 800)
    rows = _rows(p, p, challenger_ms=40.0, errors=80)
    verdict = judge_window(rows, WINDOW, _labels(800, (p > 0.5).astype(int)), STRICT, False)
    by_name = {c.name: c for c in verdict.checks}
    assert by_name["error_rate"].verdict.value == "fail"
    assert by_name["latency"].verdict.value == "fail"
    assert by_name["latency"].numbers["challenger_n"] == 200  # 800 dies in batches of 4
    assert by_name["accuracy"].numbers["labelled_n"] == 720  # errored dies are not paired


def test_latency_compares_answered_requests_when_both_versions_have_enough():
    p = np.linspace(0.01, 0.99, 800)
    rows = _rows(p, p, challenger_ms=40.0)  # only its copies are slow
    served = {"version": 2, "served": True, "latency_ms": 2.0, "request_id": "x"}
    answered = pd.DataFrame([{**rows.iloc[1].to_dict(), **served, "request_id": f"s{i}"}
                             for i in range(60)])  # fmt: skip
    champion, challenger = rows[rows.version == 1], pd.concat([rows[rows.version == 2], answered])
    fast, slow = comparable_latencies(champion, challenger, min_samples=50)
    assert fast.size == 200 and set(slow) == {2.0}
    _, mixed = comparable_latencies(champion, challenger, min_samples=100)
    assert mixed.size == 260 and mixed.max() > 40


def test_too_few_labelled_dies_is_inconclusive():
    p = np.linspace(0.01, 0.99, 800)
    verdict = judge_window(_rows(p, p), WINDOW, _labels(10, [1] * 10), STRICT, False)
    assert verdict.verdict.value == "inconclusive"
    assert "too few samples" in next(c.reason for c in verdict.checks if c.name == "accuracy")


def test_pairs_latencies_and_lots_of_a_window():
    rows = _rows([0.9, 0.2], [0.8, 0.4], batch=1)
    pairs = paired_answers(rows, WINDOW)
    assert pairs[["champion", "challenger"]].to_numpy().tolist() == [[0.9, 0.8], [0.2, 0.4]]
    assert request_latencies(rows[rows.version == 1]).size == 2
    assert lots_in(rows.assign(die_key=["A:W:1:1", "A:W:1:1", "B:1:2:3", "B:1:2:3"])) == ["A", "B"]


def test_the_window_reads_only_its_versions_since_the_step_began(tmp_path):
    url = f"sqlite:///{tmp_path / 'predictions.db'}"
    log = PredictionLog(url, flush_seconds=0.01)
    before, after = T0 - timedelta(seconds=5), T0 + timedelta(seconds=1)
    for request, at, version in [
        ("a", before, 1),
        ("b", after, 1),
        ("b", after, 2),
        ("c", after, 3),
    ]:
        row = _row(request, "L:W:0:0", version, True, 0.7, 1.0, None)
        log.add([{**row, "role": "x", "time": at, "prediction": 1}])
    log.flush()
    log.close()
    frame = read_window(url, WINDOW)
    assert sorted(zip(frame.request_id, frame.version)) == [("b", 1), ("b", 2)]
    assert requests_per_version(url, WINDOW) == {1: 1, 2: 1}


# -- the offline check's data ----------------------------------------------------------------


def test_recent_lots_are_the_newest_of_the_targets_fabs(tmp_path):
    import hashlib

    from yieldops.config import product
    from yieldops.curated.dataset import write_file_tables
    from yieldops.rollout.offline import NoRecentData, recent_lots
    from yieldops.rollout.targets import Target
    from yieldops.stdf import read_tables
    from yieldops.synth import PRODUCTS, synthesize

    name = "YO-28NM-PMIC"
    spec = PRODUCTS[name]
    fab_a = synthesize(tmp_path / "a", lots=3, wafers_per_lot=1, product=spec, facility="FAB-A")
    fab_b = synthesize(
        tmp_path / "b", lots=1, wafers_per_lot=1, product=spec, first_lot=3, facility="FAB-B"
    )
    for path in fab_a + fab_b:
        tables = read_tables(path)
        lot = tables["lots"]["lot_id"][0].as_py()
        sha = hashlib.sha256(path.read_bytes()).hexdigest()
        write_file_tables(tables, tmp_path / "curated", name, lot, sha)
    config = product(name)

    def lots(**target) -> list[str]:
        chosen = Target(name="t", product=name, conn_id="c", **target)
        return recent_lots(tmp_path / "curated", config, chosen).lots

    assert lots(facilities=["FAB-A"], recent_lots=2) == ["S0-L002", "S0-L003"]
    assert lots(facilities=["FAB-B"]) == ["S0-L004"]
    assert lots(recent_lots=1) == ["S0-L004"]  # any fab
    with pytest.raises(NoRecentData, match="target t: no curated YO-28NM-PMIC lot"):
        lots(facilities=["FAB-C"])


# -- what the form offers and what the registry has ------------------------------------------


def test_every_step_a_deployment_offers_has_one_name_and_a_plan_takes_only_those():
    assert offered_steps([5, 25, 50, 100]) == [
        "shadow", "canary-5", "canary-25", "canary-50", "canary-100", "switch",
    ]  # fmt: skip
    offered = offered_steps([5, 25, 50, 100])
    assert [s.name for s in plan_steps("canary", [25, 100], offered)] == [
        "shadow", "canary-25", "canary-100",
    ]  # fmt: skip
    assert [s.name for s in plan_steps("bluegreen", offered=offered)] == ["shadow", "switch"]
    with pytest.raises(ValueError, match="canary-10 not offered by this deployment: its steps"):
        plan_steps("canary", [10, 25], offered)


def test_the_models_targets_serve_come_in_yaml_order():
    targets = [
        Target(name="b-1", product="B", conn_id="x"),
        Target(name="a-1", product="A", conn_id="y"),
        Target(name="b-2", product="B", conn_id="z"),
    ]
    assert targets_by_model(targets) == {"yield-B": ["b-1", "b-2"], "yield-A": ["a-1"]}


@pytest.fixture
def registry_store(tmp_path, monkeypatch):
    """A real local MLflow registry: yield-A with v1 (champion), v2 (rejected), v3
    (challenger), and yield-B with no version."""
    import mlflow
    from mlflow import MlflowClient

    from yieldops.training import registry

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    registry.use_tracking_uri(registry.default_tracking_uri(tmp_path))
    client = MlflowClient()
    for name in ("yield-A", "yield-B"):
        client.create_registered_model(name)
    for _ in range(3):
        client.create_model_version("yield-A", source=(tmp_path / "model").as_uri())
    client.set_registered_model_alias("yield-A", registry.CHAMPION, "1")
    client.set_model_version_tag("yield-A", "2", registry.STATUS_TAG, "rejected")
    client.set_registered_model_alias("yield-A", registry.CHALLENGER, "3")
    yield
    mlflow.set_tracking_uri(None)


def test_a_version_the_registry_has_is_chosen_and_none_means_the_challenger(registry_store):
    from yieldops.rollout.versions import chosen_version

    assert chosen_version("yield-A", 1) == 1
    assert chosen_version("yield-A", None) == 3


@pytest.mark.parametrize(
    "model, version, message",
    [
        ("yield-C", 1, "model 'yield-C' is not registered; registered: yield-A, yield-B"),
        (
            "yield-A",
            7,
            r"yield-A has no version 7; versions: v1 \(champion\), v2 \(rejected\), "
            r"v3 \(challenger\)",
        ),
        (
            "yield-B",
            None,
            "yield-B: no version given and none has alias 'challenger'; versions: none",
        ),
    ],
)
def test_a_missing_model_or_version_is_refused_naming_what_exists(
    registry_store, model, version, message
):
    from yieldops.rollout.versions import UnknownVersion, chosen_version

    with pytest.raises(UnknownVersion, match=message):
        chosen_version(model, version)
