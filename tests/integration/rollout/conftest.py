"""model_rollout end to end: dag.test() steering a real gateway process under replayed traffic.

The gateway (``python -m yieldops.serving``) loads versions from a real MLflow store and
logs to SQLite; a replayer sends curated dies all along; the DAG routes, waits, judges on
the prediction log with labels from the curated data, promotes or rolls back.

Each test module has its own fab (store, curated lots, champion v1) and gateway: the
rejections and the promotions are independent and run in parallel under pytest-xdist.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import mlflow
import numpy as np
import pytest
from mlflow import MlflowClient
from sklearn.ensemble import ExtraTreesClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from tests.integration.conftest import _stop, free_port

from yieldops.config import product
from yieldops.curated.dataset import write_file_tables
from yieldops.features import build_feature_table, split_by_lot
from yieldops.rollout.audit import AuditLog
from yieldops.serving.replay import replay
from yieldops.serving.settings import GatewaySettings
from yieldops.stdf import read_tables
from yieldops.synth import PRODUCTS, synthesize
from yieldops.training import registry
from yieldops.training.model import train

PRODUCT = "YO-28NM-PMIC"
MODEL = f"yield-{PRODUCT}"
TOKEN = "rollout-test-token"  # a throwaway token of a gateway on loopback, not a secret
FAST = {
    "step_seconds": 2,
    # A step ends as soon as both versions have min_samples; the limit only matters on a
    # machine so loaded that the replayed traffic crawls (two CI runs at once took > 30 s).
    "max_step_seconds": 120,
    "poll_seconds": 0.5,
    "min_samples": 60,
    "targets": ["pmic-local"],
}
# The bad models would not pass the offline check; switched off, the live steps meet them.
LIVE_ONLY = {**FAST, "offline_check": False}
# Good challengers are the champion's size: their runs judge steering, not speed. On a loaded
# machine the shadow worker scoring their copies lags the serving process (a median of 184 ms
# against 17 ms, p95 470 ms, with two CI runs and three test jobs at once), so latency is
# judged loosely here; the slow challenger is rejected with the defaults, in
# test_rollout_rejections.py.
GOOD = {**FAST, "thresholds": {"min_latency_increase_ms": 1000.0, "p95_limit_ms": 5000.0}}


def _deeper(data, config, max_iter: int):
    params = {**config.model.params, "max_iter": max_iter}
    recipe = config.model.model_copy(update={"params": params})
    return train(data.frame, data.feature_columns, recipe)


def _inaccurate(data, config):
    """The champion's recipe on shuffled labels: worse accuracy."""
    shuffled = np.random.default_rng(3).permutation(data.y())
    return train(data.frame.assign(good=shuffled), data.feature_columns, config.model)


def _slow(data, config):
    """A big ensemble: scoring walks 400 trees one by one (~16 ms a die against the
    champion's ~2 ms, yet quick enough to reach ``min_samples`` on a busy machine)."""
    steps = [
        ("impute", SimpleImputer(strategy="median")),
        ("model", ExtraTreesClassifier(n_estimators=400, max_depth=4, random_state=0)),
    ]
    return Pipeline(steps).fit(data.X(), data.y())


def _erroring(data, config):
    """No imputer: every request with a missing test (NaN) raises."""
    return Pipeline([("model", LogisticRegression(max_iter=500))]).fit(data.X().fillna(0), data.y())


# name -> recipe(training part, product config) -> fitted model
RECIPES: dict[str, Callable] = {
    "champion": lambda data, config: train(data.frame, data.feature_columns, config.model),
    "good": lambda data, config: _deeper(data, config, 200),
    "good_again": lambda data, config: _deeper(data, config, 250),
    "inaccurate": _inaccurate,
    "slow": _slow,
    "erroring": _erroring,
}


@dataclass
class Fab:
    """Curated PMIC lots and a real MLflow store; versions are trained and registered on
    first use, in the order a module asks for them."""

    home: Path
    train_part: object
    frame: object
    columns: list[str]
    experiment: str
    versions: dict[str, int] = field(default_factory=dict)

    def version(self, name: str) -> int:
        if name not in self.versions:
            model = RECIPES[name](self.train_part, product(PRODUCT))
            features = self.train_part.X()
            if name == "erroring":
                features = features.fillna(0)  # its signature: no missing values
            run = registry.log_training_run(self.experiment, model, features, None)
            self.versions[name] = registry.register_challenger(
                run, MODEL, {"passed": True, "reasons": []}
            )
        return self.versions[name]


@pytest.fixture(scope="module")
def fab(tmp_path_factory, airflow_db):
    """This module's fab: curated lots, the champion v1 serving."""
    home = tmp_path_factory.mktemp("rollout") / "home"
    paths = synthesize(
        home.parent / "stdf", lots=4, wafers_per_lot=1, seed=0, product=PRODUCTS[PRODUCT], drift=0.3
    )
    for path in paths:
        tables = read_tables(path)
        lot_id = tables["lots"]["lot_id"][0].as_py()
        sha = hashlib.sha256(path.read_bytes()).hexdigest()
        write_file_tables(tables, home / "curated", PRODUCT, lot_id, sha)
    table = build_feature_table(home / "curated", product(PRODUCT))
    train_part, _ = split_by_lot(table, holdout_lots=1)
    registry.use_tracking_uri(registry.default_tracking_uri(home))
    experiment = registry.open_experiment(PRODUCT, home)
    fab = Fab(home, train_part, table.frame, table.feature_columns, experiment)
    registry.promote_champion(MODEL, fab.version("champion"))
    yield fab
    mlflow.set_tracking_uri(None)


@pytest.fixture(scope="module")
def gateway(fab):
    """The gateway process for the target ``pmic-local``, with its Airflow connection; one
    per module, so routing carries from one test to the next as it would in production."""
    with target_gateway(fab, fab.home) as url:
        yield url


@contextmanager
def target_gateway(fab: Fab, home: Path, **changes: Any):
    """A gateway process for the target ``pmic-local`` (``changes`` to its default settings)
    keeping its routing and prediction log in ``home``; yields its URL while the target's
    Airflow connection names it."""
    home.mkdir(parents=True, exist_ok=True)
    settings = GatewaySettings(
        model_name=MODEL,
        admin_token=TOKEN,
        log_url=f"sqlite:///{home / 'predictions.db'}",
        routing_path=home / "routing.json",
        port=free_port(),
        **changes,
    )
    env = {
        # Untraced under coverage (its code is measured by test_gateway.py in process): a
        # tracer would slow the answers the steps judge on latency, and the whole run.
        **{k: v for k, v in os.environ.items() if k != "COVERAGE_PROCESS_CONFIG"},
        "YIELDOPS_HOME": str(home),
        **settings.to_environment(),
        "MLFLOW_TRACKING_URI": registry.default_tracking_uri(fab.home),
    }
    process = subprocess.Popen([sys.executable, "-m", "yieldops.serving"], env=env)
    url = settings.url
    connection = settings.airflow_connection()
    try:
        _await_ready(url, process)
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("AIRFLOW_CONN_YIELDOPS_GATEWAY_PMIC", json.dumps(connection))
            patch.setenv("YIELDOPS_HOME", str(fab.home))
            patch.setenv("MLFLOW_TRACKING_URI", registry.default_tracking_uri(fab.home))
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
def traffic(fab: Fab, url: str):
    """Curated dies replayed to the gateway until the block ends; yields the report box."""
    stop, box = threading.Event(), {}

    def run() -> None:
        box["report"] = replay(url, fab.frame, fab.columns, rate_per_s=200, batch_size=8, stop=stop)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield box
    finally:
        stop.set()
        thread.join(timeout=30)


def routing(url: str) -> dict:
    return httpx.get(f"{url}/v1/routing", timeout=5).json()


def audit_rows(fab: Fab, run) -> list[dict]:
    audit = AuditLog(f"sqlite:///{fab.home / 'rollout.db'}")
    try:
        return audit.rows(run_id=run.run_id)
    finally:
        audit.close()


def version_tags(version: int) -> dict:
    return MlflowClient().get_model_version(MODEL, str(version)).tags
