"""Shadow scoring's cost to the caller: gateway latency and throughput, mode off vs shadow;
and how fast a rollback takes effect, beside a routing change that loads a model.

Real models: synthetic PMIC lots (``yieldops.synth``) curated to Parquet, two pipelines of
the product's model spec trained on the first lot and on the first two, registered in a
local MLflow store. A real gateway (``python -m yieldops.serving``) serves them on a free
127.0.0.1 port, the older one as champion. Dies of the newest lot are replayed to it
(``yieldops.serving.replay``: one request at a time, by default as fast as they are
answered) with routing mode ``off`` and ``shadow`` in alternating rounds (ABBA order), so
drifting machine noise hits both alike. After a shadow round the gateway's shadow backlog
is drained before the next round starts, so no round pays for another's copies.

Then ``--rollbacks`` times over: v2 is routed in shadow (loaded from MLflow again: a
rollback unloads it) and rolled back (the champion stays loaded); the admin calls' round
trips, and the switch the gateway reports (``took_ms``), side by side.

    python benchmarks/bench_gateway.py                 # about a minute
    python benchmarks/bench_gateway.py --rounds 12 --requests 500 --batch-sizes 1 20 100
    python benchmarks/bench_gateway.py --rate 100      # paced: 100 requests/s
"""

from __future__ import annotations

import argparse
import hashlib
import math
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
from scipy import stats

from yieldops.names import model_name as registered_model
from yieldops.serving.settings import GatewaySettings

PRODUCT = "YO-28NM-PMIC"
STARTUP_TIMEOUT = 120.0
DRAIN_TIMEOUT = 60.0
WARMUP_REQUESTS = 20
MODES = ("off", "shadow")


@dataclass(frozen=True)
class Traffic:
    frame: pd.DataFrame
    feature_columns: list[str]
    lot: str


@dataclass
class Sample:
    """What the caller saw in one mode and batch size, over every round."""

    latencies_ms: list[float]
    dies: int = 0
    seconds: float = 0.0


# -- models and the gateway ------------------------------------------------------------------


def curated_fab(work: Path):
    """Three one-wafer lots of the product, synthesized and curated under ``work``; their
    feature table."""
    from yieldops.config import product
    from yieldops.curated.dataset import write_file_tables
    from yieldops.features import build_feature_table
    from yieldops.stdf import read_tables
    from yieldops.synth import PRODUCTS, synthesize

    paths = synthesize(
        work / "landing", lots=3, wafers_per_lot=1, seed=0, product=PRODUCTS[PRODUCT]
    )
    for path in paths:
        tables = read_tables(path)
        lot_id = tables["lots"]["lot_id"][0].as_py()
        sha = hashlib.sha256(path.read_bytes()).hexdigest()
        write_file_tables(tables, work / "curated", PRODUCT, lot_id, sha)
    return build_feature_table(work / "curated", product(PRODUCT))


def register_models(work: Path) -> tuple[str, str, Traffic]:
    """Versions 1 (trained on lot 1) and 2 (lots 1-2) in a local MLflow store; the
    traffic is lot 3. Returns the tracking URI, the registered model name and the traffic."""
    import mlflow

    from yieldops.config import product
    from yieldops.features import feature_matrix
    from yieldops.training import registry, train
    from yieldops.training.serving_form import check_serving_form

    config = product(PRODUCT)
    table = curated_fab(work)
    frame, columns = table.frame, table.feature_columns

    # The benchmark's own store, whatever MLFLOW_TRACKING_URI says.
    experiment = registry.open_experiment(PRODUCT, work, registry.default_tracking_uri(work))
    model_name = registered_model(PRODUCT)
    newest = table.lots[-1]
    holdout = feature_matrix(frame[frame["lot_id"] == newest], columns)
    for lots in (table.lots[:1], table.lots[:2]):
        training = frame[frame["lot_id"].isin(lots)]
        model = train(training, columns, config.model)
        with mlflow.start_run(experiment_id=experiment) as run:
            logged = registry.log_model(model, training[columns])
            # The serving form as training registers it: the gateway scores ONNX Runtime.
            form = check_serving_form(model, holdout, config.model.serving_tolerance)
            registry.log_serving_form(logged.model_id, form)
        registry.register_challenger(run.info.run_id, model_name, {"passed": True})
    traffic = Traffic(frame[frame["lot_id"] == newest].reset_index(drop=True), columns, newest)
    return mlflow.get_tracking_uri(), model_name, traffic


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_gateway(work: Path, tracking_uri: str, model_name: str, token: str, port: int, log):
    gateway = GatewaySettings(
        model_name=model_name,
        routing_path=work / "routing.json",
        log_url=f"sqlite:///{work / 'predictions.db'}",
        admin_token=token,
        initial_champion=1,
        mlflow_tracking_uri=tracking_uri,
        port=port,
    )
    env = {**os.environ, "YIELDOPS_HOME": str(work), **gateway.to_environment()}
    # A file, not a pipe: nobody drains a pipe while the benchmark runs.
    return subprocess.Popen(
        [sys.executable, "-m", "yieldops.serving"], env=env, stdout=log, stderr=subprocess.STDOUT
    )


def wait_ready(client: httpx.Client, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while True:
        try:
            if client.get("/readyz").status_code == 200:
                return
        except httpx.TransportError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError("the gateway did not become ready")
        time.sleep(0.1)


def stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def set_mode(client: httpx.Client, mode: str) -> None:
    change = {"mode": mode, "challenger": 2}
    response = client.put("/v1/routing", json=change)
    response.raise_for_status()


def shadow_gauges(client: httpx.Client) -> tuple[float, float]:
    """(requests whose copies are not scored yet, dies whose copy was dropped) from /metrics."""
    from prometheus_client.parser import text_string_to_metric_families

    backlog = dropped = 0.0
    for family in text_string_to_metric_families(client.get("/metrics").text):
        for sample in family.samples:
            if sample.name.endswith("_shadow_backlog"):
                backlog += sample.value
            elif sample.name.endswith("_shadow_dropped_total"):
                dropped += sample.value
    return backlog, dropped


def drain_shadow(client: httpx.Client) -> None:
    """Wait until the mirror workers have scored (or dropped) every copy handed to them."""
    deadline = time.monotonic() + DRAIN_TIMEOUT
    while shadow_gauges(client)[0] > 0:
        if time.monotonic() > deadline:
            raise RuntimeError("the shadow backlog did not drain")
        time.sleep(0.05)


# -- load ------------------------------------------------------------------------------------


def send(url: str, traffic: Traffic, batch: int, requests: int, rate: float):
    """``requests`` requests of ``batch`` dies, one at a time (``rate`` per second, or as
    fast as answered when 0)."""
    from yieldops.serving.replay import replay

    rate_per_s = rate * batch if rate > 0 else math.inf
    report = replay(
        url,
        traffic.frame,
        traffic.feature_columns,
        rate_per_s=rate_per_s,
        batch_size=batch,
        limit=requests * batch,
    )
    if report.failed:
        raise RuntimeError(f"{report.failed_requests} requests failed: {dict(report.errors)}")
    return report


def measure(client: httpx.Client, mode: str, traffic: Traffic, batch: int, requests: int, rate):
    """One load in ``mode`` (already set); in shadow, returns once its copies are scored."""
    report = send(str(client.base_url), traffic, batch, requests, rate)
    if mode == "shadow":
        drain_shadow(client)
    return report


def run_rounds(client, traffic, args) -> tuple[dict[tuple[int, str], Sample], float]:
    """Samples by (batch, mode) over ``args.rounds`` rounds; and the dies whose copy was
    dropped."""
    samples: dict[tuple[int, str], Sample] = defaultdict(lambda: Sample([]))
    for mode in MODES:  # warm up both paths (first model calls, connections)
        set_mode(client, mode)
        for batch in args.batch_sizes:
            measure(client, mode, traffic, batch, WARMUP_REQUESTS, args.rate)
    dropped_at_start = shadow_gauges(client)[1]
    for round_index in range(args.rounds):
        for mode in MODES if round_index % 2 == 0 else MODES[::-1]:
            set_mode(client, mode)
            for batch in args.batch_sizes:
                report = measure(client, mode, traffic, batch, args.requests, args.rate)
                sample = samples[batch, mode]
                sample.latencies_ms += report.latencies_ms
                sample.dies += report.ok
                sample.seconds += report.seconds
    return samples, shadow_gauges(client)[1] - dropped_at_start


def measure_rollbacks(client: httpx.Client, times: int) -> dict[str, list[float]]:
    """Milliseconds of each routing change, ``times`` times after a warm-up: routing v2 in
    shadow (a model load), the rollback round trip, and the switch the gateway reports."""
    measured: dict[str, list[float]] = defaultdict(list)
    for attempt in range(times + 1):
        started = time.perf_counter()
        set_mode(client, "shadow")
        loaded = (time.perf_counter() - started) * 1000.0
        started = time.perf_counter()
        response = client.post("/v1/routing/rollback")
        response.raise_for_status()
        rolled_back = (time.perf_counter() - started) * 1000.0
        if attempt:  # the first spawns the mirror workers too
            measured["route v2 in shadow (loads it)"].append(loaded)
            measured["rollback, round trip"].append(rolled_back)
            measured["rollback, gateway's switch (took_ms)"].append(response.json()["took_ms"])
    return measured


# -- the table -------------------------------------------------------------------------------


def table_rows(batch: int, off: Sample, shadow: Sample) -> list[str]:
    def row(measure: str, a: float, b: float) -> str:
        diff = b - a
        return f"{batch:>5}  {measure:<8} {a:>10.2f} {b:>10.2f} {diff:>+9.2f} ({diff / a:+6.1%})"

    rows = [
        row(f"p{q} ms", np.percentile(off.latencies_ms, q), np.percentile(shadow.latencies_ms, q))
        for q in (50, 95, 99)
    ]
    rows.append(row("dies/s", off.dies / off.seconds, shadow.dies / shadow.seconds))
    test = stats.mannwhitneyu(shadow.latencies_ms, off.latencies_ms, alternative="greater")
    rows.append(
        f"{batch:>5}  Mann-Whitney U, shadow slower: p = {test.pvalue:.3g} "
        f"({len(off.latencies_ms)} off vs {len(shadow.latencies_ms)} shadow requests)"
    )
    return rows


def print_table(samples: dict[tuple[int, str], Sample], batch_sizes: list[int]) -> None:
    print(f"{'batch':>5}  {'measure':<8} {'off':>10} {'shadow':>10} {'diff':>9}")
    for batch in batch_sizes:
        for line in table_rows(batch, samples[batch, "off"], samples[batch, "shadow"]):
            print(line)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=6, help="off/shadow rounds (ABBA order)")
    parser.add_argument("--requests", type=int, default=200, help="per round, mode and batch")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 20])
    parser.add_argument("--rate", type=float, default=0, help="requests/s; 0: back to back")
    parser.add_argument("--rollbacks", type=int, default=10, help="shadow/rollback pairs timed")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="yieldops-bench-gateway-"))
    log_path = work / "gateway.log"
    process = None
    try:
        tracking_uri, model_name, traffic = register_models(work)
        token, port = secrets.token_urlsafe(16), free_port()
        url = f"http://127.0.0.1:{port}"
        with log_path.open("wb") as log:
            process = start_gateway(work, tracking_uri, model_name, token, port, log)
        headers = {"Authorization": f"Bearer {token}"}
        with httpx.Client(base_url=url, headers=headers, timeout=30) as client:
            wait_ready(client, process)
            started = time.perf_counter()
            samples, dropped = run_rounds(client, traffic, args)
            seconds = time.perf_counter() - started
            changes = measure_rollbacks(client, args.rollbacks)
        pace = f"{args.rate:g} requests/s" if args.rate > 0 else "back to back"
        print(
            f"gateway pid {process.pid} on {url}: champion v1, challenger v2 "
            f"({len(traffic.feature_columns)} features), traffic lot {traffic.lot} "
            f"({len(traffic.frame)} dies)\n"
            f"{args.rounds} rounds x {args.requests} requests per mode and batch size, "
            f"one request at a time, {pace}; {seconds:.0f} s of load\n"
        )
        print_table(samples, args.batch_sizes)
        shadowed = sum(samples[b, "shadow"].dies for b in args.batch_sizes)
        print(f"\nshadow: {shadowed} dies mirrored to v2, {dropped:.0f} of them dropped")
        print(f"\nrouting changes, {args.rollbacks} of each, ms: {'p50':>8} {'max':>8}")
        for change, ms in changes.items():
            print(f"  {change:38} {np.median(ms):8.2f} {max(ms):8.2f}")
    except Exception:
        if log_path.exists():
            print(log_path.read_text(errors="replace")[-3000:], file=sys.stderr)
        raise
    finally:
        if process is not None:
            stop(process)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
