"""How soon a rollback reaches every worker of a gateway with several workers on one port.

A real gateway (``python -m yieldops.serving``, ``YIELDOPS_GATEWAY_WORKERS``) on a free
127.0.0.1 port serves a small pipeline registered twice (versions 1 and 2) in a local
MLflow store. ``--cycles`` times over: v2 is routed in canary through one connection and
every worker is seen serving it, then it is rolled back through that connection, and
``/readyz`` is probed on new connections (the kernel hands each to either worker) until
every worker answers with the rolled-back table. Reported: the time from the rollback's
answer to the last worker answering with the new table (an upper bound: a probe lands on
a worker by chance), and the rollback's own round trip.

    python benchmarks/bench_gateway_workers.py                  # 2 workers, 20 cycles
    python benchmarks/bench_gateway_workers.py --workers 4 --cycles 50
"""

from __future__ import annotations

import argparse
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import mlflow
import numpy as np
import pandas as pd
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline

from yieldops.serving.settings import GatewaySettings
from yieldops.training import registry

MODEL = "yield-BENCH"
COLUMNS = ["test_100", "test_101", "x", "y"]
TIMEOUT = 120.0  # seconds for any one wait: a stuck gateway, not a measurement


def register_two_versions(home: Path) -> str:
    """Versions 1 and 2 of ``MODEL`` in a local store under ``home``; returns its URI."""
    experiment = registry.open_experiment("BENCH", home, registry.default_tracking_uri(home))
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.normal(size=(100, len(COLUMNS))), columns=COLUMNS)
    model = Pipeline([("impute", SimpleImputer()), ("classify", LogisticRegression())])
    model.fit(frame, (frame["test_100"] > 0).astype(int))
    with mlflow.start_run(experiment_id=experiment) as run:
        registry.log_model(model, frame)
    for _ in range(2):
        registry.register_challenger(run.info.run_id, MODEL, {"passed": True})
    return mlflow.get_tracking_uri()


def every_worker_serves(probes: httpx.Client, workers: int, mode: str, pause: float) -> None:
    """Probes ``/readyz`` until ``workers`` distinct workers last answered with ``mode``."""
    last: dict[int, str] = {}
    deadline = time.monotonic() + TIMEOUT
    while len(last) < workers or any(seen != mode for seen in last.values()):
        if time.monotonic() > deadline:
            raise TimeoutError(f"workers never all served {mode}: {last}")
        try:
            answer = probes.get("/readyz").json()
            if "routing" in answer:
                last[answer["pid"]] = answer["routing"]["mode"]
        except httpx.TransportError:
            pass
        time.sleep(pause)


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--cycles", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-workers-") as folder:
        home = Path(folder)
        token = secrets.token_hex(8)
        settings = GatewaySettings(
            model_name=MODEL,
            routing_path=home / "routing.json",
            log_url=f"sqlite:///{home / 'predictions.db'}",
            admin_token=token,
            initial_champion=1,
            mlflow_tracking_uri=register_two_versions(home),
            mirror_processes=0,
            workers=args.workers,
            port=free_port(),
        )
        env = {**os.environ, "YIELDOPS_HOME": str(home), **settings.to_environment()}
        with (home / "gateway.log").open("w") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "yieldops.serving"],
                env=env, stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip
        probes = httpx.Client(
            base_url=settings.url,
            timeout=10,
            headers={"Connection": "close"},
            limits=httpx.Limits(max_keepalive_connections=0),
        )
        admin = httpx.Client(
            base_url=settings.url, timeout=30, headers={"Authorization": f"Bearer {token}"}
        )
        reached, round_trips = [], []
        try:
            every_worker_serves(probes, args.workers, "off", pause=0.05)
            for _ in range(args.cycles):
                canary = {"challenger": 2, "mode": "canary", "weight": 50}
                admin.put("/v1/routing", json=canary).raise_for_status()
                every_worker_serves(probes, args.workers, "canary", pause=0.02)
                started = time.perf_counter()
                admin.post("/v1/routing/rollback").raise_for_status()
                answered = time.perf_counter()
                every_worker_serves(probes, args.workers, "off", pause=0.001)
                reached.append((time.perf_counter() - answered) * 1000.0)
                round_trips.append((answered - started) * 1000.0)
        finally:
            probes.close()
            admin.close()
            process.terminate()
            process.wait(timeout=30)
    print(f"{args.workers} workers, {args.cycles} rollbacks")
    for name, values in (("rollback round trip", round_trips), ("every worker", reached)):
        print(
            f"  {name}: p50 {percentile(values, 50):.1f} ms, p95 {percentile(values, 95):.1f} ms,"
            f" max {max(values):.1f} ms"
        )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


if __name__ == "__main__":
    main()
