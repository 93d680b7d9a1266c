"""Hostile and malformed requests to the prediction gateway, its limits, the counting of
every outcome, and MLflow's scoring formats on ``/invocations``.

The gateway runs in process (FastAPI's TestClient) with a small fitted Pipeline as its
loader. Where the network is the point (a body refused while it is still being sent,
``/healthz`` during a slow upload, a keep-alive connection after a 500), a real uvicorn
server on 127.0.0.1 is driven with ``http.client``, one chunk at a time.
"""

from __future__ import annotations

import asyncio
import functools
import http.client
import json
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from tests.integration.conftest import serve_gateway

from yieldops.serving import app as app_module
from yieldops.serving.app import create_app
from yieldops.serving.records import MAX_KEY_CHARS, parse_body, parse_records
from yieldops.serving.settings import GatewaySettings

TOKEN = "t0ken-for-tests"
ADMIN = {"Authorization": f"Bearer {TOKEN}"}
COLUMNS = ["test_100", "test_101", "x", "y"]
# Model versions: a fitted pipeline; one that answers NaN probabilities; the same pipeline
# again, as a challenger.
GOOD, NAN, CHALLENGER = 1, 2, 3


def _train() -> Pipeline:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.normal(size=(200, len(COLUMNS))), columns=COLUMNS)
    label = (frame["test_100"] + 0.5 * frame["x"] > 0).astype(int)
    return Pipeline([("impute", SimpleImputer()), ("classify", LogisticRegression())]).fit(
        frame, label
    )


class NaNAnswers:
    """Loads like the pipeline, answers NaN probabilities: a broken model the gateway cannot
    turn into JSON (an unhandled error, not a model exception)."""

    def __init__(self, model: Pipeline) -> None:
        self.feature_names_in_ = model.feature_names_in_
        self.classes_ = model.classes_

    def predict_proba(self, frame):
        return np.full((len(frame), 2), np.nan)


@pytest.fixture(scope="module")
def model() -> Pipeline:
    return _train()


def load_from(models: dict[int, object], version: int):
    return models[version]


def settings_in(tmp_path: Path, **changes) -> GatewaySettings:
    defaults = {
        "model_name": "yield-test",
        "routing_path": tmp_path / "routing.json",
        "log_url": f"sqlite:///{tmp_path / 'predictions.db'}",
        "admin_token": TOKEN,
        "initial_champion": GOOD,
        "log_flush_seconds": 0.05,
    }
    return GatewaySettings(**{**defaults, **changes})


@contextmanager
def gateway(settings: GatewaySettings, model: Pipeline) -> Iterator[TestClient]:
    """The app in process, once its champion is loaded."""
    loader = functools.partial(load_from, {GOOD: model, NAN: NaNAnswers(model)})
    with TestClient(create_app(settings, loader=loader)) as client:
        deadline = time.monotonic() + 30
        while client.get("/readyz").status_code != 200:
            assert time.monotonic() < deadline, "the gateway did not load its champion"
            time.sleep(0.01)
        yield client


@pytest.fixture
def client(tmp_path, model) -> Iterator[TestClient]:
    with gateway(settings_in(tmp_path), model) as client:
        yield client


def die(i: int, **extra) -> dict:
    rng = np.random.default_rng(i)
    record = {"lot_id": "LOT1", "wafer_id": 1, "x": i % 7, "y": i // 7}
    return {**record, "test_100": float(rng.normal()), "test_101": float(rng.normal()), **extra}


def post_json(client: TestClient, text: str, path: str = "/v1/predict"):
    return client.post(path, content=text, headers={"Content-Type": "application/json"})


def refusal(response, status: int) -> str:
    """The message of a refusal with ``status``; refusals are short whatever was sent."""
    assert response.status_code == status, response.text
    assert len(response.content) < 600
    return response.json()["detail"]


def requests_by_outcome(client) -> dict[str, float]:
    (family,) = [
        f
        for f in text_string_to_metric_families(client.get("/metrics").text)
        if f.name == "yieldops_gateway_requests"
    ]
    return {s.labels["outcome"]: s.value for s in family.samples if s.name.endswith("_total")}


# -- limits --------------------------------------------------------------------------------


def test_a_body_over_the_size_limit_is_a_413_naming_the_limit(tmp_path, model):
    with gateway(settings_in(tmp_path, max_body_bytes=1000), model) as client:
        for path in ("/v1/predict", "/invocations"):
            detail = refusal(post_json(client, json.dumps([die(1)] * 40), path), 413)
            assert "limit of 1000 bytes" in detail
        chunked = client.post("/v1/predict", content=iter([b"[", b" " * 2000, b"]"]))
        assert "limit of 1000 bytes" in refusal(chunked, 413)
        assert post_json(client, json.dumps([die(1)])).status_code == 200


def test_too_many_records_are_a_413_before_any_record_is_parsed(tmp_path, model):
    with gateway(settings_in(tmp_path, max_batch=3), model) as client:
        not_records = [["not a record"]] * 4  # a parsed record would be a 422
        bodies = [
            ("/v1/predict", not_records),
            ("/v1/predict", {"records": not_records}),
            ("/invocations", {"dataframe_split": {"columns": ["a"], "data": not_records}}),
            ("/invocations", {"inputs": {"test_100": [1.0, 2.0, 3.0, 4.0]}}),
        ]
        for path, body in bodies:
            detail = refusal(post_json(client, json.dumps(body), path), 413)
            assert detail == "4 records; at most 3 per request"
        assert post_json(client, json.dumps([die(i) for i in range(3)])).status_code == 200


def test_a_chunked_body_is_refused_as_soon_as_it_passes_the_limit(uvicorn_gateway):
    """The server answers 413 while the body has no end yet: it never waits for all of it."""
    conn = http.client.HTTPConnection(uvicorn_gateway.host, uvicorn_gateway.port, timeout=30)
    conn.putrequest("POST", "/v1/predict")
    conn.putheader("Transfer-Encoding", "chunked")
    conn.endheaders()
    piece = b" " * (64 * 1024)
    for _ in range(UVICORN_MAX_BODY // len(piece) + 1):
        conn.send(_chunk(piece))
    response = conn.getresponse()  # no last chunk was sent
    assert response.status == 413
    assert f"limit of {UVICORN_MAX_BODY} bytes" in json.loads(response.read())["detail"]
    conn.close()


def test_a_content_length_over_the_limit_is_refused_before_the_body_is_sent(uvicorn_gateway):
    conn = http.client.HTTPConnection(uvicorn_gateway.host, uvicorn_gateway.port, timeout=30)
    conn.putrequest("POST", "/invocations")
    conn.putheader("Content-Length", str(200 * 1024 * 1024))
    conn.endheaders()  # and not one byte of the 200 MB
    response = conn.getresponse()
    assert response.status == 413
    assert len(response.read()) < 200
    conn.close()


def test_healthz_answers_while_a_large_body_is_being_sent(uvicorn_gateway):
    records = [die(i) for i in range(1200)]
    body = json.dumps({"records": records}).encode()
    assert app_module.PARSE_ON_LOOP_BYTES < len(body) < UVICORN_MAX_BODY
    conn = http.client.HTTPConnection(uvicorn_gateway.host, uvicorn_gateway.port, timeout=30)
    conn.putrequest("POST", "/v1/predict")
    conn.putheader("Content-Type", "application/json")
    conn.putheader("Transfer-Encoding", "chunked")
    conn.endheaders()
    conn.send(_chunk(body[: len(body) // 2]))
    for _ in range(3):  # the upload is half sent, and the gateway answers others
        assert uvicorn_gateway.client.get("/healthz").json() == {"status": "ok"}
    conn.send(_chunk(body[len(body) // 2 :]) + b"0\r\n\r\n")
    response = conn.getresponse()
    assert response.status == 200
    assert len(json.loads(response.read())["predictions"]) == 1200
    conn.close()


def test_large_bodies_are_parsed_off_the_event_loop(client, monkeypatch):
    on_loop: list[bool] = []

    def noting_parse(body: bytes, max_records: int | None = None):
        try:
            asyncio.get_running_loop()
            on_loop.append(True)
        except RuntimeError:  # a worker thread runs no event loop
            on_loop.append(False)
        return parse_body(body, max_records)

    monkeypatch.setattr(app_module, "parse_body", noting_parse)
    small = [die(1)]
    large = [die(i) for i in range(1000)]
    assert len(json.dumps(large)) > app_module.PARSE_ON_LOOP_BYTES
    for records in (small, large):
        assert post_json(client, json.dumps(records)).status_code == 200
    assert on_loop == [True, False]


# -- records -------------------------------------------------------------------------------


@pytest.mark.parametrize("number", ["NaN", "Infinity", "-Infinity", "1e400", "1" + "0" * 400])
def test_features_must_be_finite_numbers(client, number):
    body = f'[{{"die_key": "a", "test_100": 0.5}}, {{"die_key": "b", "test_100": {number}}}]'
    detail = refusal(post_json(client, body), 422)
    assert detail.startswith("record 1: feature 'test_100' is not a finite number")
    missing = post_json(client, '{"die_key": "b", "test_100": null}')  # missing: imputed
    assert missing.status_code == 200


@pytest.mark.parametrize(
    ("key_fields", "problem"),
    [
        ('"lot_id": {"a": 1}, "wafer_id": 1', "lot_id must be a string or an integer"),
        ('"lot_id": NaN, "wafer_id": 1', "lot_id must be a string or an integer"),
        ('"lot_id": "L", "wafer_id": true', "wafer_id must be a string or an integer"),
        ('"lot_id": "\\ud800", "wafer_id": 1', "lot_id is not valid text (a lone surrogate)"),
        ('"lot_id": "L\\u0000", "wafer_id": 1', "lot_id holds a NUL character"),
        (f'"lot_id": "{"L" * MAX_KEY_CHARS}", "wafer_id": 1', "is over 256 characters"),
        ('"die_key": {"a": 1}', "die_key must be a non-empty string"),
        ('"die_key": NaN', "die_key must be a non-empty string"),
        ('"die_key": "\\udc80"', "die_key is not valid text (a lone surrogate)"),
    ],
)
def test_die_key_fields_are_scalars_of_bounded_valid_text(client, key_fields, problem):
    body = f'{{{key_fields}, "x": 1, "y": 2, "test_100": 0.1}}'
    detail = refusal(post_json(client, body), 422)
    assert detail.startswith("record 0") and problem in detail


def test_positions_are_integers(client):
    assert "x must be an integer" in refusal(post_json(client, json.dumps(die(0, x=1.5))), 422)
    assert post_json(client, json.dumps(die(0, x=3.0))).status_code == 200  # 3.0 is 3


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ("[" * 100_000, "the JSON is nested too deeply"),
        ('{"die_key": "a", "t": [[[[1]]]]}', "record 0: feature 't' is an array, not a number"),
        ('{"die_key": "a", "t": "high"}', "record 0: feature 't' is a string, not a number"),
        ("{", "the body is not valid JSON"),
        ("", "the body is not valid JSON"),
        ('[{"die_key": "a"}, 7]', "record 1 is not a JSON object"),
        ("[]", "no records"),
        ('{"dataframe_split": {"columns": ["t"], "data": [[1, 2]]}}', "record 0: a row must"),
        ('{"inputs": {"a": [1], "b": [1, 2]}}', "inputs as columns must map each name"),
        ('{"inputs": [], "instances": []}', "give exactly one of"),
    ],
)
def test_malformed_bodies_are_a_422_naming_the_problem(client, body, problem):
    assert problem in refusal(post_json(client, body), 422)


def test_a_refusal_never_echoes_the_body(client):
    name, value = "n" * 100_000, "v" * 500_000
    detail = refusal(post_json(client, json.dumps({"die_key": "a", name: value})), 422)
    assert detail == f"record 0: feature '{'n' * 40}'... is a string, not a number"
    assert value[:50] not in detail


def test_a_failing_request_never_fails_the_others(client, model):
    bad = '[{"die_key": "a", "test_100": 1}, {"die_key": "b", "test_100": Infinity}]'
    good = [die(i) for i in range(5)]
    expected = model.predict_proba(pd.DataFrame(good)[COLUMNS])[:, 1]
    for _ in range(3):
        assert post_json(client, bad).status_code == 422
        answer = post_json(client, json.dumps(good))
        assert answer.status_code == 200
        probabilities = [p["probability"] for p in answer.json()["predictions"]]
        assert probabilities == pytest.approx(expected)


# -- counting and unhandled errors ---------------------------------------------------------


def test_every_outcome_is_counted(client):
    assert requests_by_outcome(client) == {
        "ok": 0,
        "client_error": 0,
        "unavailable": 0,
        "server_error": 0,
    }
    assert post_json(client, json.dumps(die(1))).status_code == 200
    assert post_json(client, json.dumps({"inputs": [die(1)]}), "/invocations").status_code == 200
    assert post_json(client, "[" * 50_000).status_code == 422
    assert post_json(client, '{"die_key": "a", "t": NaN}', "/invocations").status_code == 422
    assert client.get("/v1/predict").status_code == 405
    assert client.put("/v1/routing", json={"champion": NAN}, headers=ADMIN).status_code == 200
    failed = post_json(client, json.dumps(die(1)))
    assert failed.status_code == 500 and failed.json() == {"detail": "internal server error"}
    client.get("/healthz")  # neither these nor admin calls are prediction requests
    assert requests_by_outcome(client) == {
        "ok": 2,
        "client_error": 3,
        "unavailable": 0,
        "server_error": 1,
    }


def test_a_500_keeps_the_callers_connection_and_is_counted(tmp_path, model):
    settings = settings_in(tmp_path, initial_champion=NAN)
    loader = functools.partial(load_from, {GOOD: model, NAN: NaNAnswers(model)})
    with serve_gateway(settings, loader) as (client, _):
        conn = http.client.HTTPConnection(client.base_url.host, client.base_url.port, timeout=30)
        conn.request(
            "POST", "/v1/predict", json.dumps(die(1)), {"Content-Type": "application/json"}
        )
        response = conn.getresponse()
        assert response.status == 500
        assert json.loads(response.read()) == {"detail": "internal server error"}
        sock = conn.sock
        conn.request("GET", "/healthz")
        assert conn.getresponse().read() == b'{"status":"ok"}'
        assert conn.sock is sock  # the same connection answered
        conn.close()
        assert requests_by_outcome(client)["server_error"] == 1


# -- admin ---------------------------------------------------------------------------------


def test_admin_without_a_token_says_so_and_the_gateway_warns_once(tmp_path, model, caplog):
    caplog.set_level(logging.WARNING, logger="yieldops.serving.app")
    with gateway(settings_in(tmp_path, admin_token=""), model) as client:
        for headers in ({}, {"Authorization": "Bearer guess"}):
            put = client.put("/v1/routing", json={"champion": GOOD}, headers=headers)
            rollback = client.post("/v1/routing/rollback", headers=headers)
            for response in (put, rollback):
                detail = refusal(response, 403)
                assert "no admin token configured" in detail
                assert "YIELDOPS_GATEWAY_ADMIN_TOKEN" in detail
    warnings = [r for r in caplog.records if "no admin token" in r.getMessage()]
    assert len(warnings) == 1 and warnings[0].levelno == logging.WARNING


# -- MLflow's scoring formats --------------------------------------------------------------


def test_invocations_answer_as_mlflow_in_every_format(client, model):
    records = [die(i) for i in range(6)]
    records[2]["test_101"] = None  # missing: imputed, as on /v1/predict
    expected = model.predict_proba(pd.DataFrame(records)[COLUMNS])
    ours = post_json(client, json.dumps({"records": records})).json()["predictions"]
    assert [p["probability"] for p in ours] == pytest.approx(expected[:, 1])

    columns = list(records[0])
    features_only = [{c: r[c] for c in COLUMNS} for r in records]  # keys generated
    bodies = {
        "dataframe_split": {"columns": columns, "data": [[r[c] for c in columns] for r in records]},
        "dataframe_records": records,
        "inputs": records,
        "instances": features_only,
    }
    bodies = {form: {form: rows} for form, rows in bodies.items()}
    bodies["inputs as columns"] = {"inputs": {c: [r[c] for r in records] for c in columns}}
    bodies["with params"] = {"dataframe_records": features_only, "params": {"unused": 1}}
    for form, body in bodies.items():
        response = post_json(client, json.dumps(body), "/invocations")
        assert response.status_code == 200, (form, response.text)
        assert list(response.json()) == ["predictions"]
        predictions = np.array(response.json()["predictions"])
        np.testing.assert_allclose(predictions, expected, rtol=1e-9, err_msg=form)
        assert len(response.headers["x-request-id"]) == 32


def test_mlflow_rows_are_named_alike_in_the_gateway_and_its_mirror():
    """The mirror worker parses the same bytes again: its dies must carry the same keys."""
    rows = [[1, "LOT1", 3, 4, 0.5], [None, None, 3, 4, 0.5], [None, None, 3, 4, 0.5]]
    rows.append([None, None, 5, 4, 0.5])
    split = {"columns": ["wafer_id", "lot_id", "x", "y", "t"], "data": rows}
    body = json.dumps({"dataframe_split": split}).encode()
    keys = [d.key for d in parse_body(body)]
    assert keys == [d.key for d in parse_records(json.loads(body))]
    assert keys[0] == "LOT1:1:3:4"  # a row with every key field is named by them
    assert keys[1] == keys[2] != keys[3]  # else by its content
    assert all(k.startswith("row:") and len(k) == 20 for k in keys[1:])
    with pytest.raises(ValueError, match="record 0 has no die_key and lacks lot_id"):
        parse_records([{"x": 3, "y": 4, "wafer_id": 1}])  # the gateway's own shape


def test_invocations_are_mirrored_under_the_same_keys(tmp_path, model):
    """In shadow mode the mirror worker parses the MLflow body again, in its own process:
    its unserved rows carry the keys the served rows have, generated ones included."""
    loader = functools.partial(load_from, {GOOD: model, CHALLENGER: model})
    with serve_gateway(settings_in(tmp_path), loader) as (client, gateway):
        change = {"challenger": CHALLENGER, "mode": "shadow"}
        assert client.put("/v1/routing", json=change, headers=ADMIN).status_code == 200
        records = [die(1), {c: die(2)[c] for c in COLUMNS}]
        response = client.post("/invocations", json={"dataframe_records": records})
        assert response.status_code == 200, response.text
        request_id = response.headers["x-request-id"]
        deadline = time.monotonic() + 60  # the worker process starts and loads the version
        while len(rows := gateway.prediction_log.rows(request_id=request_id)) < 4:
            assert time.monotonic() < deadline, rows
            time.sleep(0.05)
    keys = {(r["served"], r["version"], r["die_key"]) for r in rows}
    generated = next(r["die_key"] for r in rows if r["die_key"].startswith("row:"))
    assert keys == {
        (served, version, key)
        for served, version in ((True, GOOD), (False, CHALLENGER))
        for key in ("LOT1:1:1:0", generated)
    }


# -- the real server -----------------------------------------------------------------------

UVICORN_MAX_BODY = 256 * 1024


class Served:
    def __init__(self, client) -> None:
        self.client = client
        self.host = client.base_url.host
        self.port = client.base_url.port


@pytest.fixture(scope="module")
def uvicorn_gateway(tmp_path_factory, model) -> Iterator[Served]:
    settings = settings_in(tmp_path_factory.mktemp("uvicorn"), max_body_bytes=UVICORN_MAX_BODY)
    loader = functools.partial(load_from, {GOOD: model})
    with serve_gateway(settings, loader) as (client, _):
        yield Served(client)


def _chunk(data: bytes) -> bytes:
    """``data`` as one chunk of a chunked HTTP body."""
    return b"%x\r\n%s\r\n" % (len(data), data)
