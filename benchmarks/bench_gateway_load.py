"""The gateway at test-floor load, beside `mlflow models serve` on the same registered version.

What a test floor does: many testers asking at once, mostly one die per request. Both
servers serve version 1 of the same model (synthetic PMIC lots trained and registered in a
local MLflow store, as in bench_gateway.py) on free 127.0.0.1 ports, each as its user would
start it: `python -m yieldops.serving` (champion only, routing off) and `mlflow models serve
--env-manager local` (its defaults: one worker). The dies of a newer lot are the traffic.

- closed loop: ``--concurrency`` clients, each sending its next request when the last one
  is answered, for ``--seconds`` per run, with ``--batch-sizes`` dies per request;
- open loop (``--rates``): requests sent at a fixed rate whatever the answers, latency
  counted from when each was due (no coordinated omission).

Runs alternate between the two servers (ABBA) so machine noise hits both alike. Reported
per run: requests/s, dies/s, p50/p95/p99 latency, failed requests, the server's CPU
seconds per request, and the load generator's own CPU (it shares the machine's cores).

Then the gateway alone with version 2 as challenger: shadow's cost to throughput at the
highest concurrency (off vs shadow, ABBA), shadow at ``--shadow-rate`` dies/s (copies
dropped?), and failed requests while the routing switches shadow -> canary -> rollback
every ``--switch-every`` seconds under load.

    python benchmarks/bench_gateway_load.py                      # about 5 minutes
    python benchmarks/bench_gateway_load.py --seconds 30 --concurrency 1 10 50 --rates 500
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import secrets
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import httpx
import numpy as np
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_gateway import (
    drain_shadow,
    free_port,
    register_models,
    shadow_gauges,
    start_gateway,
    stop,
)

STARTUP_TIMEOUT = 180.0
WARMUP_SECONDS = 2.0
# An open-loop request unanswered this long counts as failed (a server behind its rate
# would otherwise hold the run for as long as its backlog).
OPEN_LOOP_TIMEOUT = 10.0


@dataclass(frozen=True)
class Server:
    name: str
    url: str  # the scoring endpoint
    process: subprocess.Popen
    bodies: dict[int, list[bytes]]  # batch size -> request bodies, sent round robin


@dataclass
class Run:
    latencies_ms: list[float] = field(default_factory=list)
    failed: int = 0
    seconds: float = 0.0
    server_cpu: float = 0.0
    client_cpu: float = 0.0


# -- the two servers ------------------------------------------------------------------------


def traffic_rows(traffic) -> list[list[float | None]]:
    """The traffic's feature rows as JSON sends them: a missing value is null."""
    values = traffic.frame[traffic.feature_columns].astype(float).to_numpy()
    return [[None if np.isnan(v) else float(v) for v in row] for row in values]


def gateway_bodies(traffic, batch: int, count: int) -> list[bytes]:
    rows, columns = traffic_rows(traffic), traffic.feature_columns
    bodies = []
    for i in range(count):
        dies = [
            {"die_key": f"bench:{i}:{j}", **dict(zip(columns, rows[(i * batch + j) % len(rows)]))}
            for j in range(batch)
        ]
        bodies.append(json.dumps({"records": dies}).encode())
    return bodies


def mlflow_bodies(traffic, batch: int, count: int) -> list[bytes]:
    rows, columns = traffic_rows(traffic), traffic.feature_columns
    bodies = []
    for i in range(count):
        data = [rows[(i * batch + j) % len(rows)] for j in range(batch)]
        bodies.append(json.dumps({"dataframe_split": {"columns": columns, "data": data}}).encode())
    return bodies


def start_mlflow(work: Path, tracking_uri: str, model_name: str, port: int, log):
    bin_dir = Path(sys.executable).parent  # it starts uvicorn from PATH
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": tracking_uri,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    command = [
        str(bin_dir / "mlflow"),
        "models",
        "serve",
        "-m",
        f"models:/{model_name}/1",
        "--env-manager",
        "local",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    return subprocess.Popen(command, env=env, cwd=work, stdout=log, stderr=subprocess.STDOUT)


def wait_until_up(url: str, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{url}: the server exited with {process.returncode}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not come up in {STARTUP_TIMEOUT:.0f} s")


def cpu_seconds(process: subprocess.Popen) -> float:
    """User and system CPU of the server and its children (workers) so far."""
    root = psutil.Process(process.pid)
    total = 0.0
    for proc in [root, *root.children(recursive=True)]:
        try:
            times = proc.cpu_times()
            total += times.user + times.system
        except psutil.NoSuchProcess:
            pass
    return total


def own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


# -- load -----------------------------------------------------------------------------------


async def post(session: aiohttp.ClientSession, url: str, body: bytes) -> bool:
    try:
        async with session.post(url, data=body, headers={"Content-Type": "application/json"}) as r:
            await r.read()
            return r.status == 200
    except (aiohttp.ClientError, TimeoutError):  # refused, dropped, or past the timeout
        return False


async def closed_loop(server: Server, batch: int, clients: int, seconds: float, run: Run) -> None:
    bodies = server.bodies[batch]
    connector = aiohttp.TCPConnector(limit=clients)
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        stop_at = time.perf_counter() + seconds
        sent = 0

        async def client() -> None:
            nonlocal sent
            while time.perf_counter() < stop_at:
                body = bodies[sent % len(bodies)]
                sent += 1
                started = time.perf_counter()
                ok = await post(session, server.url, body)
                run.latencies_ms.append((time.perf_counter() - started) * 1000.0)
                run.failed += not ok

        await asyncio.gather(*(client() for _ in range(clients)))


async def open_loop(server: Server, batch: int, rate: float, seconds: float, run: Run) -> None:
    bodies = server.bodies[batch]
    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=OPEN_LOOP_TIMEOUT)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        start = time.perf_counter()

        async def one(i: int, due: float) -> None:
            ok = await post(session, server.url, bodies[i % len(bodies)])
            run.latencies_ms.append((time.perf_counter() - due) * 1000.0)
            run.failed += not ok

        tasks = []
        for i in range(int(rate * seconds)):
            due = start + i / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(i, due)))
        await asyncio.gather(*tasks)


def load_of(server: Server, kind: str, level: float, batch: int, seconds: float):
    """The load as a function of the run it records into: ``level`` clients (closed loop)
    or requests per second (open loop)."""
    if kind == "closed":
        return lambda run: closed_loop(server, batch, int(level), seconds, run)
    return lambda run: open_loop(server, batch, level, seconds, run)


def load_name(kind: str, level: float) -> str:
    return f"closed c={int(level)}" if kind == "closed" else f"open {level:g}/s"


def measure(server: Server, load) -> Run:
    run = Run()
    cpu, mine, started = cpu_seconds(server.process), own_cpu(), time.perf_counter()
    asyncio.run(load(run))
    run.seconds = time.perf_counter() - started
    run.server_cpu = cpu_seconds(server.process) - cpu
    run.client_cpu = own_cpu() - mine
    return run


# -- report ---------------------------------------------------------------------------------


HEADER = (
    f"{'server':<8} {'load':<14} {'batch':>5} {'req/s':>8} {'dies/s':>9} {'p50 ms':>8} "
    f"{'p95 ms':>8} {'p99 ms':>8} {'failed':>6} {'srv CPU ms/req':>14} {'client CPU':>10}"
)


def row(server: str, load: str, batch: int, runs: list[Run]) -> str:
    latencies = np.concatenate([r.latencies_ms for r in runs])
    answered = sum(len(r.latencies_ms) for r in runs)
    seconds = sum(r.seconds for r in runs)
    failed = sum(r.failed for r in runs)
    server_ms = 1000.0 * sum(r.server_cpu for r in runs) / max(answered, 1)
    client = sum(r.client_cpu for r in runs) / seconds
    p50, p95, p99 = np.percentile(latencies, [50, 95, 99])
    return (
        f"{server:<8} {load:<14} {batch:>5} {answered / seconds:>8.0f} "
        f"{answered * batch / seconds:>9.0f} {p50:>8.1f} {p95:>8.1f} {p99:>8.1f} {failed:>6} "
        f"{server_ms:>14.2f} {client:>10.0%}"
    )


# -- routing under load (the gateway alone) ------------------------------------------------

SWITCHES = ({"mode": "shadow", "challenger": 2}, {"mode": "canary", "weight": 50}, None)


def shadow_cost(server: Server, admin: httpx.Client, args) -> list[str]:
    """Closed loop at the highest concurrency, batch 1, routing off vs shadow (ABBA), each
    shadow run's copies drained before the next run; and the dies whose copy was dropped."""
    clients = max(args.concurrency)
    runs: dict[str, list[Run]] = {"off": [], "shadow": []}
    dropped = shadow_gauges(admin)[1]
    for round_index in range(args.rounds):
        for mode in ("off", "shadow") if round_index % 2 == 0 else ("shadow", "off"):
            admin.put("/v1/routing", json={"mode": mode, "challenger": 2}).raise_for_status()
            runs[mode].append(measure(server, load_of(server, "closed", clients, 1, args.seconds)))
            drain_shadow(admin)
    dropped = shadow_gauges(admin)[1] - dropped
    off, shadow = (
        sum(len(r.latencies_ms) for r in runs[m]) / sum(r.seconds for r in runs[m])
        for m in ("off", "shadow")
    )
    return [
        row("gateway", f"shadow off c={clients}", 1, runs["off"]),
        row("gateway", f"shadow on c={clients}", 1, runs["shadow"]),
        f"shadow costs {1 - shadow / off:.1%} of throughput; {dropped:.0f} copies dropped",
    ]


def shadow_at_rate(server: Server, admin: httpx.Client, rate: float, seconds: float) -> list[str]:
    """Open loop at ``rate`` single-die requests/s in shadow: were copies dropped?"""
    admin.put("/v1/routing", json={"mode": "shadow", "challenger": 2}).raise_for_status()
    dropped = shadow_gauges(admin)[1]
    run = measure(server, load_of(server, "open", rate, 1, seconds))
    drain_shadow(admin)
    dropped = shadow_gauges(admin)[1] - dropped
    admin.post("/v1/routing/rollback").raise_for_status()
    mirrored = len(run.latencies_ms) - run.failed
    return [
        row("gateway", f"shadow {rate:g}/s", 1, [run]),
        f"shadow at {rate:g} dies/s: {mirrored} dies mirrored, {dropped:.0f} copies dropped",
    ]


def switching(server: Server, admin: httpx.Client, args, every: float) -> list[str]:
    """Closed loop while the routing goes shadow -> canary 50 % -> rollback every ``every``
    seconds: failed requests, and the switches made."""
    stop_switching, switches = threading.Event(), []

    def switch() -> None:
        while not stop_switching.wait(every):
            change = SWITCHES[len(switches) % len(SWITCHES)]
            if change is None:
                admin.post("/v1/routing/rollback").raise_for_status()
            else:
                admin.put("/v1/routing", json=change).raise_for_status()
            switches.append(change)

    switcher = threading.Thread(target=switch)
    switcher.start()
    try:
        run = measure(server, load_of(server, "closed", max(args.concurrency), 1, 3 * args.seconds))
    finally:
        stop_switching.set()
        switcher.join()
    admin.post("/v1/routing/rollback").raise_for_status()
    drain_shadow(admin)
    return [
        row("gateway", f"switching c={max(args.concurrency)}", 1, [run]),
        f"routing switched {len(switches)} times (every {every:g} s) under load: "
        f"{run.failed} failed requests",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="per run")
    parser.add_argument("--rounds", type=int, default=2, help="runs per server and load (ABBA)")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 10, 50])
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 20])
    parser.add_argument("--rates", type=float, nargs="*", default=[200.0], help="open loop, req/s")
    parser.add_argument("--only", choices=["gateway", "mlflow"], help="one server alone")
    parser.add_argument("--shadow-rate", type=float, default=200.0, help="dies/s, open loop")
    parser.add_argument("--switch-every", type=float, default=2.0, help="seconds")
    parser.add_argument("--no-routing", action="store_true", help="skip the routing scenarios")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="yieldops-bench-load-"))
    processes: list[subprocess.Popen] = []
    try:
        tracking_uri, model_name, traffic = register_models(work)
        servers = []
        count = 500
        token = secrets.token_urlsafe(16)
        gateway_url = ""
        if args.only != "mlflow":
            port = free_port()
            gateway_url = f"http://127.0.0.1:{port}"
            with (work / "gateway.log").open("wb") as log:
                process = start_gateway(work, tracking_uri, model_name, token, port, log)
            processes.append(process)
            wait_until_up(f"http://127.0.0.1:{port}/readyz", process)
            bodies = {b: gateway_bodies(traffic, b, count) for b in args.batch_sizes}
            servers.append(
                Server("gateway", f"http://127.0.0.1:{port}/v1/predict", process, bodies)
            )
        if args.only != "gateway":
            port = free_port()
            with (work / "mlflow.log").open("wb") as log:
                process = start_mlflow(work, tracking_uri, model_name, port, log)
            processes.append(process)
            wait_until_up(f"http://127.0.0.1:{port}/ping", process)
            bodies = {b: mlflow_bodies(traffic, b, count) for b in args.batch_sizes}
            servers.append(
                Server("mlflow", f"http://127.0.0.1:{port}/invocations", process, bodies)
            )

        results: dict[tuple[str, str, int], list[Run]] = {}
        plans = [("closed", c, b) for c in args.concurrency for b in args.batch_sizes]
        plans += [("open", r, 1) for r in args.rates]
        for server in servers:  # warm up: first model calls, connections
            for batch in args.batch_sizes:
                measure(server, load_of(server, "closed", 4, batch, WARMUP_SECONDS))
        for round_index in range(args.rounds):
            order = servers if round_index % 2 == 0 else servers[::-1]
            for kind, level, batch in plans:
                for server in order:
                    run = measure(server, load_of(server, kind, level, batch, args.seconds))
                    results.setdefault((server.name, load_name(kind, level), batch), []).append(run)
        print(
            f"model {model_name} v1 ({len(traffic.feature_columns)} features), traffic lot "
            f"{traffic.lot}; {args.rounds} run(s) of {args.seconds:g} s per server and load, "
            f"alternating; {os.cpu_count()} cores shared by servers and load generator\n"
        )
        print(HEADER)
        for (server, load, batch), runs in results.items():
            print(row(server, load, batch, runs))
        if gateway_url and not args.no_routing:
            print("\nrouting under load (the gateway alone; v2 challenger):")
            (gateway,) = [s for s in servers if s.name == "gateway"]
            auth = {"Authorization": f"Bearer {token}"}
            with httpx.Client(base_url=gateway_url, headers=auth, timeout=60) as admin:
                lines = shadow_cost(gateway, admin, args)
                lines += shadow_at_rate(gateway, admin, args.shadow_rate, args.seconds)
                lines += switching(gateway, admin, args, args.switch_every)
            print("\n".join(lines))
    except Exception:
        for log in work.glob("*.log"):
            print(f"--- {log.name}\n{log.read_text(errors='replace')[-3000:]}", file=sys.stderr)
        raise
    finally:
        for process in processes:
            stop(process)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
