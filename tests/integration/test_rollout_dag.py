"""model_rollout end to end: dag.test() steering a real gateway process under replayed traffic.

The gateway (``python -m yieldops.serving``) loads versions from a real MLflow store and
logs to SQLite; a replayer sends curated dies all along; the DAG routes, waits, judges on
the prediction log with labels from the curated data, promotes or rolls back.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import threading
import time
from contextlib import contextmanager

import httpx
import mlflow
import numpy as np
import pytest
from mlflow import MlflowClient
from sklearn.ensemble import ExtraTreesClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from tests.integration.conftest import _stop, free_port, load_dag, task_states

from yieldops.config import product
from yieldops.curated.dataset import write_file_tables
from yieldops.features import build_feature_table, split_by_lot
from yieldops.rollout.audit import AuditLog
from yieldops.serving.replay import replay
from yieldops.stdf import read_tables
from yieldops.synth import PRODUCTS, synthesize
from yieldops.training import registry
from yieldops.training.model import train

PRODUCT = "YO-28NM-PMIC"
MODEL = f"yield-{PRODUCT}"
TOKEN = "rollout-test-token"  # a throwaway token of a gateway on loopback, not a secret
FAST = {
    "step_seconds": 2,
    "max_step_seconds": 30,
    "poll_seconds": 0.5,
    "min_samples": 60,
    "targets": ["pmic-local"],
}
# The bad models would not pass the offline check; switched off, the live steps meet them.
LIVE_ONLY = {**FAST, "offline_check": False}


@pytest.fixture(scope="module")
def fab(tmp_path_factory, airflow_db):
    """Curated PMIC lots, a champion (v1) and challengers good and bad, in a real store."""
    home = tmp_path_factory.mktemp("rollout") / "home"
    paths = synthesize(
        home.parent / "stdf", lots=4, wafers_per_lot=1, seed=0, product=PRODUCTS[PRODUCT], drift=0.3
    )
    for path in paths:
        tables = read_tables(path)
        lot_id = tables["lots"]["lot_id"][0].as_py()
        sha = hashlib.sha256(path.read_bytes()).hexdigest()
        write_file_tables(tables, home / "curated", PRODUCT, lot_id, sha)
    config = product(PRODUCT)
    table = build_feature_table(home / "curated", config)
    train_part, _ = split_by_lot(table, holdout_lots=1)
    registry.use_tracking_uri(registry.default_tracking_uri(home))
    experiment = registry.open_experiment(PRODUCT, home)
    versions = {
        name: _register(experiment, model, features)
        for name, (model, features) in _models(train_part, config).items()
    }
    registry.promote_champion(MODEL, versions["champion"])
    yield {
        "home": home,
        "versions": versions,
        "frame": table.frame,
        "columns": table.feature_columns,
    }
    mlflow.set_tracking_uri(None)


def _models(data, config) -> dict:
    """name -> (fitted model, features to log it with)."""
    X, y = data.X(), data.y()
    shuffled = np.random.default_rng(3).permutation(y)
    deeper = config.model.model_copy(update={"params": {**config.model.params, "max_iter": 200}})
    longer = config.model.model_copy(update={"params": {**config.model.params, "max_iter": 250}})
    return {
        "champion": (train(data.frame, data.feature_columns, config.model), X),
        "good": (train(data.frame, data.feature_columns, deeper), X),
        "good_again": (train(data.frame, data.feature_columns, longer), X),
        # Worse accuracy: the same recipe on shuffled labels.
        "inaccurate": (
            train(data.frame.assign(good=shuffled), data.feature_columns, config.model),
            X,
        ),
        # Slow: a huge ensemble (scoring walks 1,500 trees one by one).
        "slow": (
            Pipeline(
                [
                    ("impute", SimpleImputer(strategy="median")),
                    ("model", ExtraTreesClassifier(n_estimators=1500, max_depth=4, random_state=0)),
                ]
            ).fit(X, y),
            X,
        ),
        # Erroring: no imputer, so every request with a missing test (NaN) raises.
        "erroring": (
            Pipeline([("model", LogisticRegression(max_iter=500))]).fit(X.fillna(0), y),
            X.fillna(0),
        ),
    }


def _register(experiment: str, model, features) -> int:
    run = registry.log_training_run(experiment, model, features, None)
    return registry.register_challenger(run, MODEL, {"passed": True, "reasons": []})


@pytest.fixture
def gateway(fab, monkeypatch):
    """The gateway process for the target ``pmic-local``, with its Airflow connection."""
    home = fab["home"]
    port = free_port()
    log_url = f"sqlite:///{home / 'predictions.db'}"
    env = {
        **os.environ,
        "YIELDOPS_HOME": str(home),
        "YIELDOPS_GATEWAY_MODEL": MODEL,
        "YIELDOPS_GATEWAY_ADMIN_TOKEN": TOKEN,
        "YIELDOPS_GATEWAY_LOG_URL": log_url,
        "YIELDOPS_GATEWAY_ROUTING_PATH": str(home / f"routing-{port}.json"),
        "YIELDOPS_GATEWAY_PORT": str(port),
        "MLFLOW_TRACKING_URI": registry.default_tracking_uri(home),
    }
    process = subprocess.Popen([sys.executable, "-m", "yieldops.serving"], env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        _await_ready(url, process)
        connection = {
            "conn_type": "http",
            "host": "127.0.0.1",
            "port": port,
            "password": TOKEN,
            "extra": {"prediction_log_url": log_url},
        }
        monkeypatch.setenv("AIRFLOW_CONN_YIELDOPS_GATEWAY_PMIC", json.dumps(connection))
        monkeypatch.setenv("YIELDOPS_HOME", str(home))
        monkeypatch.setenv("MLFLOW_TRACKING_URI", registry.default_tracking_uri(home))
        yield url
    finally:
        _stop(process)


def _await_ready(url: str, process: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, "the gateway process exited"
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"the gateway at {url} did not become ready")


@contextmanager
def traffic(fab, url: str):
    """Curated dies replayed to the gateway until the block ends; yields the report box."""
    stop, box = threading.Event(), {}

    def run() -> None:
        box["report"] = replay(
            url, fab["frame"], fab["columns"], rate_per_s=200, batch_size=8, stop=stop
        )

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield box
    finally:
        stop.set()
        thread.join(timeout=30)


def _routing(url: str) -> dict:
    return httpx.get(f"{url}/v1/routing", timeout=5).json()


def _audit(fab, run) -> list[dict]:
    audit = AuditLog(f"sqlite:///{fab['home'] / 'rollout.db'}")
    try:
        return audit.rows(run_id=run.run_id)
    finally:
        audit.close()


def _tags(version: int) -> dict:
    return MlflowClient().get_model_version(MODEL, str(version)).tags


@pytest.mark.parametrize("bad", ["inaccurate", "slow", "erroring"])
def test_a_bad_challenger_is_rolled_back_at_the_first_step_and_the_champion_serves(
    fab, gateway, bad
):
    champion, version = fab["versions"]["champion"], fab["versions"][bad]
    with traffic(fab, gateway) as box:
        run = load_dag("model_rollout").test(
            run_conf={**LIVE_ONLY, "model": MODEL, "version": version}
        )
    assert run.state == "failed"
    states = task_states(run)
    assert states["pmic-local.shadow.analyse"] == "failed"
    assert states["rollback"] == "success"
    assert states["promote"] == "upstream_failed"
    assert states["pmic-local.step_1.set_routing"] == "upstream_failed"

    routing = _routing(gateway)
    assert (routing["champion"], routing["mode"]) == (champion, "off")
    assert registry.alias_version(MODEL, registry.CHAMPION) == champion
    tags = _tags(version)
    assert tags["rollout.status"] == "rejected"
    assert "shadow" in tags["rollout.reason"]

    report = box["report"]
    assert report.sent > 0 and report.failed == 0, report.errors  # the champion kept serving

    records = _audit(fab, run)
    rollback = next(r for r in records if r["event"] == "rollback" and r["step"] == "shadow")
    assert rollback["details"]["seconds_from_verdict"] < 5
    verdict = rollback["details"]["verdict"]
    failing = {c["name"] for c in verdict["checks"] if c["verdict"] == "fail"}
    # An inaccurate model shows in its answers: accuracy, and its shifted, disagreeing
    # predictions, whichever is decisive first.
    expected = {
        "inaccurate": {"accuracy", "shift", "agreement"},
        "slow": {"latency"},
        "erroring": {"error_rate"},
    }[bad]
    assert expected & failing, verdict["summary"]
    assert {r["event"] for r in records} >= {
        "offline_check",
        "routing",
        "verdict",
        "rollback",
        "rejected",
    }
    assert all(r["triggered_by"] and r["run_id"] == run.run_id for r in records)


def test_the_offline_check_stops_an_inaccurate_challenger_before_any_routing(fab, gateway):
    champion, version = fab["versions"]["champion"], fab["versions"]["inaccurate"]
    before = _routing(gateway)
    run = load_dag("model_rollout").test(run_conf={**FAST, "model": MODEL, "version": version})
    states = task_states(run)
    assert run.state == "failed"
    assert states["pmic-local.offline_check"] == "failed"
    assert states["pmic-local.shadow.set_routing"] == "upstream_failed"
    assert states["rollback"] == "success"
    assert _routing(gateway) == before
    assert registry.alias_version(MODEL, registry.CHAMPION) == champion
    check = next(r for r in _audit(fab, run) if r["event"] == "offline_check")
    assert check["verdict"] == "fail" and "accuracy" in check["summary"]


def test_a_good_challenger_goes_through_shadow_and_canary_to_champion(fab, gateway):
    champion, version = fab["versions"]["champion"], fab["versions"]["good"]
    with traffic(fab, gateway) as box:
        run = load_dag("model_rollout").test(run_conf={**FAST, "model": MODEL, "version": version})
    states = task_states(run)
    assert run.state == "success", states
    for group in ("shadow", "step_1", "step_2", "step_3", "step_4"):
        assert states[f"pmic-local.{group}.analyse"] == "success"
    assert states["pmic-local.step_5.set_routing"] == "skipped"
    assert states["promote"] == "success"
    assert states["rollback"] == "skipped"

    assert registry.alias_version(MODEL, registry.CHAMPION) == version
    assert _tags(version)["rollout.status"] == "champion"
    assert _tags(champion)["rollout.status"] == "retired"
    routing = _routing(gateway)
    assert (routing["champion"], routing["mode"]) == (version, "off")
    assert champion in routing["loaded"]  # the old champion stays warm for a switch back
    assert box["report"].failed == 0, box["report"].errors

    verdicts = [(r["step"], r["verdict"]) for r in _audit(fab, run) if r["event"] == "verdict"]
    # An inconclusive judgement (too few samples yet) is followed by another of that step.
    last = dict(verdicts)
    assert list(last) == ["shadow", "canary-5", "canary-25", "canary-50", "canary-100"]
    assert set(last.values()) == {"pass"}
    assert {v for _, v in verdicts} <= {"pass", "inconclusive"}


def test_targets_follow_each_other_in_yaml_order_and_every_task_can_trigger_the_rollback():
    dag = load_dag("model_rollout")
    assert "adc-local.target_done" in dag.get_task("pmic-local.offline_check").upstream_task_ids
    assert dag.get_task("pmic-local.target_done").downstream_task_ids >= {"approval_required"}
    rollback = dag.get_task("rollback")
    assert rollback.upstream_task_ids == {
        t for t in dag.task_ids if t not in ("rollback", "promote")
    }
    assert dag.get_task("promote").downstream_task_ids == set()  # a leaf: decides the run state


def test_the_rollouts_page_shows_routing_steps_numbers_and_audit(fab, gateway, plugin_client):
    """After the good rollout: the plugin's page, as the Airflow UI shows it."""
    from yieldops_plugin import YieldopsPlugin

    entries = {e["target"]: e for e in plugin_client.get("/rollouts/api").json()}
    page = plugin_client.get("/rollouts/")
    pmic = entries["pmic-local"]
    assert pmic["routing"]["champion"] == fab["versions"]["good"]
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
    before, version = fab["versions"]["good"], fab["versions"]["good_again"]
    with traffic(fab, gateway) as box:
        run = load_dag("model_rollout").test(
            run_conf={**FAST, "model": MODEL, "version": version, "strategy": "bluegreen"}
        )
    states = task_states(run)
    assert run.state == "success", states
    assert states["pmic-local.step_1.analyse"] == "success"
    assert states["pmic-local.step_2.set_routing"] == "skipped"
    switch = next(r for r in _audit(fab, run) if r["event"] == "routing" and r["step"] == "switch")
    assert (switch["details"]["mode"], switch["details"]["live"]) == ("bluegreen", "challenger")
    assert registry.alias_version(MODEL, registry.CHAMPION) == version
    assert before in _routing(gateway)["loaded"]
    assert box["report"].failed == 0, box["report"].errors


def test_restore_brings_back_an_earlier_champion_in_one_run(fab, gateway):
    first = fab["versions"]["champion"]
    run = load_dag("model_rollout").test(
        run_conf={**FAST, "model": MODEL, "version": first, "strategy": "restore"}
    )
    assert run.state == "success", task_states(run)
    assert registry.alias_version(MODEL, registry.CHAMPION) == first
    routing = _routing(gateway)
    assert (routing["champion"], routing["mode"]) == (first, "off")
    never_served = fab["versions"]["slow"]
    refused = load_dag("model_rollout").test(
        run_conf={**FAST, "model": MODEL, "version": never_served, "strategy": "restore"}
    )
    assert refused.state == "failed" and task_states(refused)["plan"] == "failed"
