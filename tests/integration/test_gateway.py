"""The prediction gateway on a real uvicorn server on 127.0.0.1, driven over HTTP.

Two small Pipelines are trained in the test and handed to the app through an injected
loader (version -> model), so no MLflow store is needed.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import httpx
import numpy as np
import pandas as pd
import pytest
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from tests.integration.conftest import serve_gateway as serve

from yieldops.serving import GatewaySettings
from yieldops.serving.routing import bucket

TOKEN = "s3cret-token"
ADMIN = {"Authorization": f"Bearer {TOKEN}"}
COLUMNS = ["test_100", "test_101", "x", "y"]
CHAMPION, CHALLENGER, BROKEN, SLOW = 1, 2, 3, 4


def _train(estimator) -> Pipeline:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.normal(size=(300, len(COLUMNS))), columns=COLUMNS)
    label = (frame["test_100"] + 0.5 * frame["x"] > 0).astype(int)
    return Pipeline([("impute", SimpleImputer(strategy="median")), ("classify", estimator)]).fit(
        frame, label
    )


class Broken:
    """Loads like a model, fails every prediction."""

    feature_names_in_ = np.array(COLUMNS)
    classes_ = np.array([0, 1])

    def predict_proba(self, frame):
        raise RuntimeError("challenger exploded")


@pytest.fixture(scope="module")
def models() -> dict[int, object]:
    champion = _train(LogisticRegression())
    challenger = _train(HistGradientBoostingClassifier(max_iter=20, random_state=0))
    return {CHAMPION: champion, CHALLENGER: challenger, BROKEN: Broken(), SLOW: challenger}


@pytest.fixture()
def loader(models):
    loads: list[int] = []

    def load(version: int):
        loads.append(version)
        if version == SLOW:
            time.sleep(0.3)  # a slow registry: requests must not wait for or fail on it
        if version not in models:
            raise LookupError(f"no version {version}")
        return models[version]

    load.loads = loads
    return load


@pytest.fixture()
def settings(tmp_path) -> GatewaySettings:
    return GatewaySettings(
        model_name="yield-test",
        routing_path=tmp_path / "routing.json",
        log_url=f"sqlite:///{tmp_path / 'predictions.db'}",
        admin_token=TOKEN,
        initial_champion=CHAMPION,
        log_flush_seconds=0.05,
    )


def die(i: int, **extra) -> dict:
    rng = np.random.default_rng(i)
    return {
        "lot_id": "LOT1",
        "wafer_id": 1,
        "x": i % 40,
        "y": i // 40,
        "test_100": float(rng.normal()),
        "features": {"test_101": float(rng.normal())},
        **extra,
    }


def test_predict_single_and_batch(settings, loader, models):
    with serve(settings, loader) as (client, _):
        assert client.get("/healthz").json() == {"status": "ok"}
        one = client.post("/v1/predict", json=die(7))
        assert one.status_code == 200, one.text
        [answer] = one.json()["predictions"]
        assert answer["die_key"] == "LOT1:1:7:0"
        assert answer["version"] == CHAMPION and answer["role"] == "champion"
        expected = models[CHAMPION].predict_proba(
            pd.DataFrame(
                [
                    {
                        "test_100": die(7)["test_100"],
                        "test_101": die(7)["features"]["test_101"],
                        "x": 7,
                        "y": 0,
                    }
                ]
            )[COLUMNS]
        )[0, 1]
        assert answer["probability"] == pytest.approx(expected)
        assert answer["good"] == (expected >= 0.5)

        batch = [die(i) for i in range(50)] + [{"die_key": "K-missing-features"}]
        answers = client.post("/v1/predict", json={"records": batch}).json()["predictions"]
        assert len(answers) == 51 and answers[-1]["die_key"] == "K-missing-features"
        assert all(0.0 <= a["probability"] <= 1.0 for a in answers)
        as_list = client.post("/v1/predict", json=batch[:3]).json()["predictions"]
        assert [a["probability"] for a in as_list] == [a["probability"] for a in answers[:3]]

        assert client.post("/v1/predict", json={"x": 1}).status_code == 422
        assert client.post("/v1/predict", json={"die_key": "a", "t": "high"}).status_code == 422


def test_readyz_waits_for_a_champion(settings, loader):
    with serve(settings, loader) as (client, _):
        assert client.get("/readyz").json()["ready"] is True
    none = replace(settings, initial_champion=None, routing_path=settings.routing_path.parent / "n")
    with serve(none, loader, ready=False) as (client, _):
        assert client.get("/healthz").status_code == 200
        assert client.get("/readyz").status_code == 503
        assert client.post("/v1/predict", json=die(1)).status_code == 503
        put = client.put("/v1/routing", json={"champion": CHALLENGER}, headers=ADMIN)
        assert put.status_code == 200, put.text
        assert client.get("/readyz").status_code == 200
        assert client.post("/v1/predict", json=die(1)).json()["predictions"][0]["version"] == 2


def test_admin_token_refusals(settings, loader):
    with serve(settings, loader) as (client, _):
        change = {"challenger": CHALLENGER, "mode": "shadow"}
        assert client.put("/v1/routing", json=change).status_code == 401
        wrong = {"Authorization": "Bearer nope"}
        assert client.put("/v1/routing", json=change, headers=wrong).status_code == 403
        assert client.post("/v1/routing/rollback").status_code == 401
        assert client.post("/v1/routing/rollback", headers=wrong).status_code == 403
        assert client.get("/v1/routing").json()["mode"] == "off"
        bad = client.put(
            "/v1/routing", json={"mode": "canary", "weight": 101, "challenger": 2}, headers=ADMIN
        )
        assert bad.status_code == 422
        missing = client.put(
            "/v1/routing", json={"challenger": 99, "mode": "shadow"}, headers=ADMIN
        )
        assert missing.status_code == 409  # a version that does not load never takes traffic
        assert client.get("/v1/routing").json()["mode"] == "off"


def test_canary_is_sticky_and_weighted(settings, loader):
    with serve(settings, loader) as (client, _):
        change = {"challenger": CHALLENGER, "mode": "canary", "weight": 25}
        assert client.put("/v1/routing", json=change, headers=ADMIN).status_code == 200
        records = [die(i) for i in range(800)]
        first = client.post("/v1/predict", json=records).json()["predictions"]
        second = client.post("/v1/predict", json=records[::-1]).json()["predictions"][::-1]
        assert [a["role"] for a in first] == [a["role"] for a in second]
        for a in first:
            assert a["role"] == ("challenger" if bucket(a["die_key"]) < 25 else "champion")
            assert a["version"] == (CHALLENGER if a["role"] == "challenger" else CHAMPION)
        share = Counter(a["role"] for a in first)["challenger"] / len(first)
        assert 0.20 < share < 0.30
        singles = {
            client.post("/v1/predict", json=records[3]).json()["predictions"][0]["role"]
            for _ in range(5)
        }
        assert singles == {first[3]["role"]}


def test_shadow_logs_challenger_but_answers_with_champion(settings, loader):
    with serve(settings, loader) as (client, gateway):
        change = {"challenger": CHALLENGER, "mode": "shadow"}
        assert client.put("/v1/routing", json=change, headers=ADMIN).status_code == 200
        for i in range(10):
            answers = client.post("/v1/predict", json=[die(i), die(i + 100)]).json()["predictions"]
            assert {(a["role"], a["version"]) for a in answers} == {("champion", CHAMPION)}
        _wait_shadow(gateway)
        rows = gateway.prediction_log.rows()
        served = [r for r in rows if r["served"]]
        shadow = [r for r in rows if not r["served"]]
        assert len(served) == 20 and len(shadow) == 20
        assert {r["version"] for r in shadow} == {CHALLENGER}
        assert {r["role"] for r in shadow} == {"challenger"}
        assert all(r["error"] is None and 0 <= r["probability"] <= 1 for r in shadow)
        assert {r["request_id"] for r in shadow} == {r["request_id"] for r in served}
        metrics = _samples(client.get("/metrics").text)
        assert (
            metrics[
                "predictions_total",
                (("path", "shadow"), ("role", "challenger"), ("version", str(CHALLENGER))),
            ]
            == 20
        )


def test_broken_shadow_never_reaches_the_caller(settings, loader):
    with serve(settings, loader) as (client, gateway):
        change = {"challenger": BROKEN, "mode": "shadow"}
        assert client.put("/v1/routing", json=change, headers=ADMIN).status_code == 200
        for i in range(20):
            response = client.post("/v1/predict", json=die(i))
            assert response.status_code == 200
            assert response.json()["predictions"][0]["role"] == "champion"
        _wait_shadow(gateway)
        shadow = gateway.prediction_log.rows(served=False)
        assert len(shadow) == 20
        assert all("challenger exploded" in r["error"] for r in shadow)
        metrics = client.get("/metrics").text
        metrics = _samples(metrics)
        assert (
            metrics[
                "errors_total",
                (("path", "shadow"), ("role", "challenger"), ("version", str(BROKEN))),
            ]
            == 20
        )
        assert metrics["requests_total", (("outcome", "ok"),)] == 20


def test_routing_survives_a_restart(settings, loader):
    change = {"challenger": CHALLENGER, "mode": "canary", "weight": 40}
    with serve(settings, loader) as (client, first):
        assert client.put("/v1/routing", json=change, headers=ADMIN).status_code == 200
        assert client.post("/v1/predict", json=[die(i) for i in range(30)]).status_code == 200
    assert len(first.prediction_log.rows()) == 30  # written before the server stopped
    with serve(settings, loader) as (client, _):
        routing = client.get("/v1/routing").json()
        assert routing | change == routing and routing["champion"] == CHAMPION
        assert sorted(routing["loaded"]) == [CHAMPION, CHALLENGER]


def test_rollback_is_immediate(settings, loader):
    with serve(settings, loader) as (client, _):
        change = {"challenger": CHALLENGER, "mode": "bluegreen", "live": "challenger"}
        assert client.put("/v1/routing", json=change, headers=ADMIN).status_code == 200
        assert (
            client.post("/v1/predict", json=die(1)).json()["predictions"][0]["role"] == "challenger"
        )
        started = time.perf_counter()
        done = client.post("/v1/routing/rollback", headers=ADMIN)
        took = time.perf_counter() - started
        assert done.status_code == 200, done.text
        assert done.json()["mode"] == "off" and done.json()["challenger"] is None
        assert took < 1.0
        answer = client.post("/v1/predict", json=die(1)).json()["predictions"][0]
        assert (answer["role"], answer["version"]) == ("champion", CHAMPION)


def test_routing_change_under_concurrent_load_fails_nothing(settings, loader):
    with serve(settings, loader) as (client, _):
        base = str(client.base_url)
        statuses: list[int] = []
        roles: Counter = Counter()
        lock = threading.Lock()

        def worker(n: int) -> None:
            with httpx.Client(base_url=base, timeout=10) as own:
                for i in range(25):
                    r = own.post("/v1/predict", json=[die(n * 1000 + i), die(n * 1000 + i + 500)])
                    with lock:
                        statuses.append(r.status_code)
                        if r.status_code == 200:
                            roles.update(a["role"] for a in r.json()["predictions"])

        with ThreadPoolExecutor(8) as pool:
            futures = [pool.submit(worker, n) for n in range(8)]
            deadline = time.monotonic() + 10
            while len(statuses) < 20 and time.monotonic() < deadline:
                time.sleep(0.005)
            before = len(statuses)
            # SLOW takes 0.3 s to load: requests keep flowing on the old table meanwhile.
            change = {"challenger": SLOW, "mode": "canary", "weight": 50}
            assert client.put("/v1/routing", json=change, headers=ADMIN).status_code == 200
            time.sleep(0.2)  # canary traffic
            assert (
                client.put("/v1/routing", json={"mode": "shadow"}, headers=ADMIN).status_code == 200
            )
            assert client.post("/v1/routing/rollback", headers=ADMIN).status_code == 200
            after = len(statuses)
            for f in futures:
                f.result()
        assert len(statuses) == 200 and set(statuses) == {200}
        assert before > 0 and after < 200, (before, after)  # the changes landed mid-load
        assert roles["challenger"] > 0
        text = client.get("/metrics").text
        metrics = _samples(text)
        assert metrics["requests_total", (("outcome", "ok"),)] == 200
        served = (("path", "served"),)
        assert (
            metrics[
                "predictions_total", (*served, ("role", "champion"), ("version", str(CHAMPION)))
            ]
            > 0
        )
        assert (
            metrics["predictions_total", (*served, ("role", "challenger"), ("version", str(SLOW)))]
            > 0
        )
        assert "latency_seconds_bucket" in text


def _samples(text: str) -> dict[tuple[str, tuple], float]:
    """Prometheus samples by (name without prefix, sorted labels), parsed as Prometheus does."""
    from prometheus_client.parser import text_string_to_metric_families

    return {
        (
            sample.name.removeprefix("yieldops_gateway_"),
            tuple(sorted(sample.labels.items())),
        ): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def _wait_shadow(gateway, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while gateway._shadow_pending and time.monotonic() < deadline:
        time.sleep(0.01)
    gateway.prediction_log.flush()


def test_default_loader_serves_the_mlflow_champion(tmp_path, models):
    """No loader given: the champion alias of the registered model, loaded from MLflow."""
    import mlflow
    import mlflow.tracking._tracking_service.utils as tracking_state
    from mlflow import MlflowClient

    from yieldops.training import registry

    previous = tracking_state._tracking_uri
    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.delenv("MLFLOW_TRACKING_URI", raising=False)
            experiment = registry.open_experiment("GW", tmp_path)
            uri = registry.tracking_uri(tmp_path)
            frame = pd.DataFrame(np.zeros((5, len(COLUMNS))), columns=COLUMNS)
            with mlflow.start_run(experiment_id=experiment) as run:
                registry.log_model(models[CHAMPION], frame)
            version = registry.register_challenger(run.info.run_id, "yield-GW", {"passed": True})
            MlflowClient().set_registered_model_alias("yield-GW", registry.CHAMPION, version)
            settings = GatewaySettings(
                model_name="yield-GW",
                routing_path=tmp_path / "routing.json",
                log_url=f"sqlite:///{tmp_path / 'predictions.db'}",
                admin_token=TOKEN,
                mlflow_tracking_uri=uri,
            )
            with serve(settings, loader=None) as (client, _):
                answer = client.post("/v1/predict", json=die(3)).json()["predictions"][0]
                assert (answer["version"], answer["role"]) == (version, "champion")
                expected = client.get("/v1/routing").json()
                assert expected["champion"] == version and expected["mode"] == "off"
    finally:
        mlflow.end_run()
        mlflow.set_tracking_uri(previous)
