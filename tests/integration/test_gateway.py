"""The prediction gateway on a real uvicorn server on 127.0.0.1, driven over HTTP.

Two small Pipelines are trained in the test and handed to the app through an injected
loader (version -> model), so no MLflow store is needed. The loader pickles (a partial of
a module-level function): the mirror worker process gets a copy and loads versions itself.
"""

from __future__ import annotations

import functools
import itertools
import logging
import os
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from tests.integration.conftest import serve_gateway as serve

from yieldops.serving.routing import Routing, bucket, counterpart
from yieldops.serving.settings import GatewaySettings

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


class Wrapped:
    """A real pipeline, loaded as itself, plus a file that the gateway's process, its mirror
    worker and the test all see."""

    def __init__(self, model, path: Path) -> None:
        self.model = model
        self.path = path
        self.feature_names_in_ = model.feature_names_in_
        self.classes_ = model.classes_


class OpenMPThreadsNoted(Wrapped):
    """Notes, in its file, which process called it and how many OpenMP threads the call
    may use (the mirror worker's calls happen in another process)."""

    def predict_proba(self, frame):
        from threadpoolctl import threadpool_info

        threads = [i["num_threads"] for i in threadpool_info() if i["user_api"] == "openmp"]
        with self.path.open("a") as notes:
            notes.writelines(f"{os.getpid()} {n}\n" for n in threads)
        return self.model.predict_proba(frame)

    def noted(self) -> list[tuple[int, int]]:
        """(process id, OpenMP threads) of every call so far."""
        if not self.path.exists():
            return []
        return [tuple(map(int, line.split())) for line in self.path.read_text().splitlines()]


class Gated(Wrapped):
    """Predicts once its file exists: the mirror worker scoring a copy with it holds that
    copy until then, so the backlog stays full."""

    def predict_proba(self, frame):
        deadline = time.monotonic() + 60
        while not self.path.exists():
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.path} was never created")
            time.sleep(0.01)
        return self.model.predict_proba(frame)


@pytest.fixture(scope="module")
def models() -> dict[int, object]:
    champion = _train(LogisticRegression())
    challenger = _train(HistGradientBoostingClassifier(max_iter=20, random_state=0))
    return {CHAMPION: champion, CHALLENGER: challenger, BROKEN: Broken(), SLOW: challenger}


def load_from(models: dict[int, object], version: int):
    """The loader's body: module level, so a partial of it pickles into the mirror worker."""
    if version == SLOW:
        time.sleep(0.3)  # a slow registry: requests must not wait for or fail on it
    if version not in models:
        raise LookupError(f"no version {version}")
    return models[version]


@pytest.fixture()
def loader(models):
    return functools.partial(load_from, models)


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


def probability_of(model, record: dict) -> float:
    """P(good) of a ``die()`` record, asked of the model directly, not through the gateway."""
    features = {"test_100": record["test_100"], "x": record["x"], "y": record["y"]}
    features.update(record["features"])
    return model.predict_proba(pd.DataFrame([features])[COLUMNS])[0, 1]


def test_predict_single_and_batch(settings, loader, models):
    with serve(settings, loader) as (client, _):
        assert client.get("/healthz").json() == {"status": "ok"}
        one = client.post("/v1/predict", json=die(7))
        assert one.status_code == 200, one.text
        [answer] = one.json()["predictions"]
        assert answer["die_key"] == "LOT1:1:7:0"
        assert answer["version"] == CHAMPION and answer["role"] == "champion"
        expected = probability_of(models[CHAMPION], die(7))
        assert answer["probability"] == pytest.approx(expected)
        assert answer["good"] == (expected > 0.5)

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


# A routing change, and the roles that answer the first 40 dies under it.
MIRRORING = {
    "shadow": ({"mode": "shadow"}, {"champion"}),
    "canary": ({"mode": "canary", "weight": 30}, {"champion", "challenger"}),
    "bluegreen": ({"mode": "bluegreen", "live": "challenger"}, {"challenger"}),
}


@pytest.mark.parametrize(("change", "answering"), MIRRORING.values(), ids=MIRRORING)
def test_every_die_is_scored_by_both_versions(settings, loader, models, change, answering):
    """The routed version answers a die (served row); the other scores a copy (unserved)."""
    routing = Routing(champion=CHAMPION, challenger=CHALLENGER, **change)
    with serve(settings, loader) as (client, gateway):
        put = client.put("/v1/routing", json={"challenger": CHALLENGER, **change}, headers=ADMIN)
        assert put.status_code == 200, put.text
        answers = []
        for i in range(0, 40, 2):
            response = client.post("/v1/predict", json=[die(i), die(i + 1)])
            answers += response.json()["predictions"]
        _wait_shadow(gateway, copies=40)
        rows = gateway.prediction_log.rows()
        metrics = _samples(client.get("/metrics").text)
    assert {a["role"] for a in answers} == answering
    assert len(rows) == 2 * len(answers) == 80
    for i, answer in enumerate(answers):
        role = routing.role_for(answer["die_key"])
        assert (answer["role"], answer["version"]) == (role, routing.version_of(role))
        [served] = [r for r in rows if r["die_key"] == answer["die_key"] and r["served"]]
        [copy] = [r for r in rows if r["die_key"] == answer["die_key"] and not r["served"]]
        assert (served["role"], served["version"]) == (role, answer["version"])
        assert served["probability"] == pytest.approx(answer["probability"])
        other = counterpart(role)
        assert (copy["role"], copy["version"]) == (other, routing.version_of(other))
        assert copy["request_id"] == served["request_id"] and copy["error"] is None
        assert copy["probability"] == pytest.approx(probability_of(models[copy["version"]], die(i)))
    mirrored = sum(
        value
        for (name, labels), value in metrics.items()
        if name == "predictions_total" and ("path", "shadow") in labels
    )
    assert mirrored == 40


def test_off_mode_logs_only_the_champion(settings, loader):
    with serve(settings, loader) as (client, gateway):
        change = {"challenger": CHALLENGER, "mode": "off"}  # named, but not in play
        assert client.put("/v1/routing", json=change, headers=ADMIN).status_code == 200
        for i in range(0, 20, 2):
            assert client.post("/v1/predict", json=[die(i), die(i + 1)]).status_code == 200
        _wait_shadow(gateway, copies=0)
        rows = gateway.prediction_log.rows()
    assert len(rows) == 20
    assert {(r["served"], r["role"], r["version"]) for r in rows} == {(True, "champion", CHAMPION)}


# The challenger answers some (canary) or all (bluegreen) of the dies.
FAILING_CHALLENGER = {
    "canary": {"mode": "canary", "weight": 50},
    "bluegreen": {"mode": "bluegreen", "live": "challenger"},
}


@pytest.mark.parametrize("change", FAILING_CHALLENGER.values(), ids=FAILING_CHALLENGER)
def test_a_failing_challenger_hands_its_dies_to_the_champion(settings, loader, change):
    routing = Routing(champion=CHAMPION, challenger=BROKEN, **change)
    with serve(settings, loader) as (client, gateway):
        put = client.put("/v1/routing", json={"challenger": BROKEN, **change}, headers=ADMIN)
        assert put.status_code == 200, put.text
        responses = [client.post("/v1/predict", json=[die(i), die(i + 1)]) for i in range(0, 40, 2)]
        # copies only of the dies routed to the champion (none back to a failed challenger)
        routed_to_champion = [routing.role_for(die_key(die(i))) == "champion" for i in range(40)]
        _wait_shadow(gateway, copies=sum(routed_to_champion))
        rows = gateway.prediction_log.rows()
        metrics = _samples(client.get("/metrics").text)
    assert [r.status_code for r in responses] == [200] * 20
    answers = [a for r in responses for a in r.json()["predictions"]]
    assert {(a["role"], a["version"]) for a in answers} == {("champion", CHAMPION)}
    keys = {a["die_key"] for a in answers}
    failed = {key for key in keys if routing.role_for(key) == "challenger"}
    assert failed

    errors = [r for r in rows if r["served"] and r["role"] == "challenger"]
    assert sorted(r["die_key"] for r in errors) == sorted(failed)
    assert all(r["version"] == BROKEN and r["probability"] is None for r in errors)
    assert all("challenger exploded" in r["error"] for r in errors)
    champion = [r["die_key"] for r in rows if r["served"] and r["role"] == "champion"]
    assert sorted(champion) == sorted(keys)  # every die answered once, by the champion
    # Copies only of the dies the champion was routed: none back to the failed challenger.
    copies = [r for r in rows if not r["served"]]
    assert sorted(r["die_key"] for r in copies) == sorted(keys - failed)
    assert {r["version"] for r in copies} <= {BROKEN}
    assert metrics["fallbacks_total", (("version", str(BROKEN)),)] == len(failed)
    assert metrics["requests_total", (("outcome", "ok"),)] == 20


def test_broken_shadow_never_reaches_the_caller(settings, loader):
    with serve(settings, loader) as (client, gateway):
        change = {"challenger": BROKEN, "mode": "shadow"}
        assert client.put("/v1/routing", json=change, headers=ADMIN).status_code == 200
        for i in range(20):
            response = client.post("/v1/predict", json=die(i))
            assert response.status_code == 200
            assert response.json()["predictions"][0]["role"] == "champion"
        _wait_shadow(gateway, copies=20)
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


def test_model_calls_keep_to_the_configured_openmp_threads(settings, models, tmp_path):
    """Served calls (server worker threads) and copies (mirror worker process) alike."""
    noted = {
        v: OpenMPThreadsNoted(models[CHALLENGER], tmp_path / f"v{v}.notes")
        for v in (CHAMPION, CHALLENGER)
    }
    loader = functools.partial(load_from, noted)
    with serve(replace(settings, model_threads=1), loader) as (client, gateway):
        change = {"challenger": CHALLENGER, "mode": "shadow"}
        assert client.put("/v1/routing", json=change, headers=ADMIN).status_code == 200
        for i in range(5):
            assert client.post("/v1/predict", json=die(i)).status_code == 200
        _wait_shadow(gateway, copies=5)
    served, copies = noted[CHAMPION].noted(), noted[CHALLENGER].noted()
    assert {pid for pid, _ in served} == {os.getpid()}  # the server runs in a thread of ours
    assert copies and os.getpid() not in {pid for pid, _ in copies}
    assert {threads for _, threads in served + copies} == {1}


def test_routing_survives_a_restart(settings, loader):
    change = {"challenger": CHALLENGER, "mode": "canary", "weight": 40}
    with serve(settings, loader) as (client, first):
        assert client.put("/v1/routing", json=change, headers=ADMIN).status_code == 200
        assert client.post("/v1/predict", json=[die(i) for i in range(30)]).status_code == 200
    # Written before the server stopped, the copies too: stopping lets the workers finish.
    assert len(first.prediction_log.rows(served=True)) == 30
    assert len(first.prediction_log.rows(served=False)) == 30
    with serve(settings, loader) as (client, _):
        routing = client.get("/v1/routing").json()
        assert routing | change == routing and routing["champion"] == CHAMPION
        assert sorted(routing["loaded"]) == [CHAMPION, CHALLENGER]


def test_rollback_needs_nothing_loaded_and_holds_from_the_next_request(settings, models, tmp_path):
    """The champion stays loaded while a challenger is live, so rolling back loads nothing
    (here the registry is down by then) and the next request is the champion's."""
    registry_down = tmp_path / "registry-down"
    loader = functools.partial(load_unless, registry_down, models)
    with serve(settings, loader) as (client, _):
        change = {"challenger": CHALLENGER, "mode": "bluegreen", "live": "challenger"}
        assert client.put("/v1/routing", json=change, headers=ADMIN).status_code == 200
        assert (
            client.post("/v1/predict", json=die(1)).json()["predictions"][0]["role"] == "challenger"
        )
        registry_down.touch()
        done = client.post("/v1/routing/rollback", headers=ADMIN)
        assert done.status_code == 200, done.text
        assert done.json()["mode"] == "off" and done.json()["challenger"] is None
        answer = client.post("/v1/predict", json=die(1)).json()["predictions"][0]
        assert (answer["role"], answer["version"]) == ("champion", CHAMPION)
        assert client.get("/v1/routing").json()["loaded"] == [CHAMPION]
        # Taking the challenger back needs the registry: refused, the champion keeps serving.
        back = {"challenger": CHALLENGER, "mode": "shadow"}
        again = client.put("/v1/routing", json=back, headers=ADMIN)
        assert again.status_code == 409 and "registry down" in again.text
        assert client.get("/v1/routing").json()["mode"] == "off"


def load_unless(down: Path, models: dict[int, object], version: int):
    """``load_from``, failing while the file ``down`` exists (a registry outage)."""
    if down.exists():
        raise ConnectionError(f"registry down: cannot load version {version}")
    return load_from(models, version)


def test_routing_change_under_concurrent_load_fails_nothing(settings, loader):
    with serve(settings, loader) as (client, _):
        base = str(client.base_url)
        statuses: list[int] = []
        roles: Counter = Counter()
        lock = threading.Lock()

        changed = threading.Event()

        def worker(n: int) -> None:
            # Load runs until the routing changes are done, then a few requests more.
            with httpx.Client(base_url=base, timeout=10) as own:
                extra = 5
                for i in itertools.count():
                    if changed.is_set():
                        extra -= 1
                        if extra < 0:
                            return
                    r = own.post("/v1/predict", json=[die(n * 1000 + i), die(n * 1000 + i + 500)])
                    with lock:
                        statuses.append(r.status_code)
                        if r.status_code == 200:
                            roles.update(a["role"] for a in r.json()["predictions"])

        with ThreadPoolExecutor(8) as pool:
            futures = [pool.submit(worker, n) for n in range(8)]
            try:
                _until(lambda: len(statuses) >= 20)  # the load flows
                # SLOW takes 0.3 s to load: requests keep flowing on the old table meanwhile.
                change = {"challenger": SLOW, "mode": "canary", "weight": 50}
                assert client.put("/v1/routing", json=change, headers=ADMIN).status_code == 200
                _until(lambda: roles["challenger"] > 0)  # the canary answers some dies
                shadow = client.put("/v1/routing", json={"mode": "shadow"}, headers=ADMIN)
                assert shadow.status_code == 200
                assert client.post("/v1/routing/rollback", headers=ADMIN).status_code == 200
            finally:
                changed.set()
            for f in futures:
                f.result()
        total = len(statuses)
        assert set(statuses) == {200}, Counter(statuses)
        text = client.get("/metrics").text
        metrics = _samples(text)
        assert metrics["requests_total", (("outcome", "ok"),)] == total
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


def test_metrics_show_the_routing_in_force(settings, loader):
    with serve(settings, loader) as (client, _):
        assert _routing_metrics(client) == (
            {"mode": "off", "champion": "1", "challenger": "", "live": "champion"},
            0,
        )
        change = {"challenger": CHALLENGER, "mode": "canary", "weight": 30}
        assert client.put("/v1/routing", json=change, headers=ADMIN).status_code == 200
        assert _routing_metrics(client) == (
            {"mode": "canary", "champion": "1", "challenger": "2", "live": "champion"},
            30,
        )
        change = {"mode": "bluegreen", "live": "challenger", "weight": 0}
        assert client.put("/v1/routing", json=change, headers=ADMIN).status_code == 200
        assert _routing_metrics(client)[0]["live"] == "challenger"
        assert client.post("/v1/routing/rollback", headers=ADMIN).status_code == 200
        assert _routing_metrics(client) == (
            {"mode": "off", "champion": "1", "challenger": "", "live": "champion"},
            0,
        )


def _routing_metrics(client) -> tuple[dict[str, str], float]:
    """The labels of the one routing_info series, and the routing weight, from /metrics."""
    samples = _samples(client.get("/metrics").text)
    [labels] = [dict(labels) for name, labels in samples if name == "routing_info"]
    return labels, samples["routing_weight", ()]


def test_dropped_copies_are_counted_by_reason_and_logged(settings, models, tmp_path, caplog):
    """With room for one request's copies, the mirror worker holding the first (its model
    waits for a gate), the next requests' copies are dropped: counted, logged once, and
    mirroring resumes once the worker has caught up."""
    gate = tmp_path / "gate"
    gated = {CHAMPION: models[CHAMPION], CHALLENGER: Gated(models[CHALLENGER], gate)}
    loader = functools.partial(load_from, gated)
    caplog.set_level(logging.WARNING, logger="yieldops.serving.mirror")
    with serve(replace(settings, mirror_max_pending=1), loader) as (client, gateway):
        change = {"challenger": CHALLENGER, "mode": "shadow"}
        assert client.put("/v1/routing", json=change, headers=ADMIN).status_code == 200
        for i in range(0, 6, 2):
            assert client.post("/v1/predict", json=[die(i), die(i + 1)]).status_code == 200
        # Copies are handed over after the answers: the two past the first are dropped.
        _until(lambda: _dropped(client)["backlog"] == 4)
        gate.touch()
        _wait_shadow(gateway, copies=2)
        assert client.post("/v1/predict", json=[die(6), die(7)]).status_code == 200
        _wait_shadow(gateway, copies=4)
        dropped, samples = _dropped(client), _samples(client.get("/metrics").text)
        copies = gateway.prediction_log.rows(served=False)
    assert dropped == {"backlog": 4, "no_workers": 0, "not_loaded": 0}
    shadow = (("path", "shadow"), ("role", "challenger"), ("version", str(CHALLENGER)))
    assert samples["predictions_total", shadow] == len(copies) == 4
    assert sorted(r["die_key"] for r in copies) == sorted(die_key(die(i)) for i in (0, 1, 6, 7))
    warnings = [r.getMessage() for r in caplog.records if r.name == "yieldops.serving.mirror"]
    assert len(warnings) == 2, warnings
    assert warnings[0].startswith("dropping mirrored copies (backlog)")
    assert "mirroring again" in warnings[1] and "4 dies" in warnings[1]


def _dropped(client) -> dict[str, float]:
    samples = _samples(client.get("/metrics").text)
    return {
        dict(labels)["reason"]: value
        for (name, labels), value in samples.items()
        if name == "shadow_dropped_total"
    }


def _until(probe, timeout: float = 300.0) -> None:
    """Until ``probe()`` is true; fails after ``timeout`` seconds, a guard against a hang, not
    a speed check: a mirror worker loading its model from MLflow (a fresh interpreter
    importing MLflow and scikit-learn) took over 120 s with two CI runs and four test jobs
    on the two cores."""
    deadline = time.monotonic() + timeout
    while not probe():
        assert time.monotonic() < deadline, f"not within {timeout:.0f} s"
        time.sleep(0.02)


def die_key(record: dict) -> str:
    return f"{record['lot_id']}:{record['wafer_id']}:{record['x']}:{record['y']}"


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


def _wait_shadow(gateway, copies: int) -> None:
    """Until ``copies`` unserved rows (the mirror workers' scored copies) are in the log,
    none is pending, and the served rows are written too. A copy is handed over after its
    answer is sent, so a backlog of 0 right after a request does not yet mean done."""
    _until(lambda: len(gateway.prediction_log.rows(served=False)) >= copies)
    _until(lambda: gateway.mirror.backlog == 0)
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
                # A niced worker importing MLflow gets ~1 % of a core on a fully loaded
                # machine (minutes); the niceness is not what this test is about.
                mirror_niceness=0,
            )
            with serve(settings, loader=None) as (client, gateway):
                answer = client.post("/v1/predict", json=die(3)).json()["predictions"][0]
                assert (answer["version"], answer["role"]) == (version, "champion")
                expected = client.get("/v1/routing").json()
                assert expected["champion"] == version and expected["mode"] == "off"
                # The mirror worker loads its copy of the loader's version from MLflow too.
                change = {"challenger": version, "mode": "shadow"}
                assert client.put("/v1/routing", json=change, headers=ADMIN).status_code == 200
                assert client.post("/v1/predict", json=die(3)).status_code == 200
                _wait_shadow(gateway, copies=1)
                [copy] = gateway.prediction_log.rows(served=False)
                assert copy["error"] is None
                assert copy["probability"] == pytest.approx(answer["probability"])
    finally:
        mlflow.end_run()
        mlflow.set_tracking_uri(previous)
