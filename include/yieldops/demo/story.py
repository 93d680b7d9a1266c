"""What ``yieldops demo`` does: the whole pipeline on a local stack, followed live.

1. start the stack (see :mod:`yieldops.demo.stack`) in a clean home;
2. land healthy baseline lots: stdf_ingest -> yield_training -> model_rollout makes the
   first model champion (no champion to compare with: promoted after its offline check);
3. replay the newest curated lot's dies to the gateway (as the tester line sends them), so
   later steps have traffic and labels;
4. land a lot whose process drifted: the retrained model goes through shadow and canary
   and, if every step passes, becomes champion;
5. print a summary (files, model versions, gate and rollout verdicts, champion now).
"""

from __future__ import annotations

import shutil
import textwrap
import threading
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import httpx

from .processes import stop_leftovers
from .stack import MODEL, PRODUCT, DemoStack
from .summary import decision_lines, file_lines, version_lines, wrap

DAGS = ("stdf_ingest", "yield_training", "model_rollout")
TERMINAL = {"success", "failed"}
BASELINE_DRIFT, DRIFTED = 0.3, 0.6  # process shift per lot index, in sigmas
REPLAY_RATE, REPLAY_BATCH = 100.0, 10
REPLAY_REFRESH_SECONDS = 10.0  # how soon a newly curated lot becomes the traffic
NOTE_CHARS = 240  # of a finished run's note, in the lines that follow the runs


class RunFollower:
    """Prints every DAG run's state change, read from Airflow's REST API."""

    def __init__(self, api: httpx.Client, say: Callable[[str], None]) -> None:
        self.api, self.say = api, say
        self.seen: dict[tuple[str, str], str] = {}

    def runs(self, dag_id: str) -> list[dict[str, Any]]:
        response = self.api.get(
            f"/dags/{dag_id}/dagRuns", params={"order_by": "-run_after", "limit": 50}
        )
        response.raise_for_status()
        return response.json()["dag_runs"]

    def poll(self) -> None:
        for dag_id in DAGS:
            for run in reversed(self.runs(dag_id)):
                key, state = (dag_id, run["dag_run_id"]), run["state"]
                if self.seen.get(key) != state:
                    self.seen[key] = state
                    note = (run.get("note") or "").splitlines()[:1] if state in TERMINAL else []
                    # Its gist, cut at a word; the summary gives the figures in full.
                    note_text = f"  ({textwrap.shorten(note[0], NOTE_CHARS)})" if note else ""
                    for line in wrap(f"{dag_id:<15} {run['dag_run_id']:<45} {state}{note_text}"):
                        self.say(line)

    def task_state(self, dag_id: str, run_id: str, task_id: str) -> str | None:
        response = self.api.get(f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}")
        return response.json().get("state") if response.status_code == 200 else None

    def finished_after(self, dag_id: str, moment: datetime) -> dict[str, Any] | None:
        """The first run of ``dag_id`` queued after ``moment`` once it has finished."""
        later = [r for r in self.runs(dag_id) if _time(r["run_after"]) >= moment]
        first = min(later, key=lambda r: r["run_after"], default=None)
        return first if first and first["state"] in TERMINAL else None


def run_demo(
    home: Path,
    *,
    lots: int = 3,
    wafers: int = 2,
    seed: int = 0,
    timeout: float = 1800,
    keep_running: bool = False,
    say: Callable[[str], None] = print,
) -> int:
    """The demo, start to summary; 0 when a champion serves at the end."""
    home = Path(home).resolve()
    stop_leftovers(home / "pids.json")
    shutil.rmtree(home, ignore_errors=True)  # a second run starts clean
    stack = DemoStack(home)
    stop_replay = threading.Event()
    try:
        stack.start(say)
        where_to_look(stack, say)
        follower = RunFollower(stack.airflow(), say)
        deadline = time.monotonic() + timeout

        say(f"\n1. landing {lots} healthy baseline lots of {PRODUCT} in {stack.landing}")
        first_landed = time.monotonic()
        land_lots(stack, lots=lots, wafers_per_lot=wafers, seed=seed, drift=BASELINE_DRIFT)
        _wait(follower, deadline, lambda: champion_serving(stack), "a champion serving")
        first_champion = time.monotonic() - first_landed

        say(f"\n2. replaying the newest curated lot's dies to the gateway ({REPLAY_RATE:g} dies/s)")
        replayer = threading.Thread(
            target=replay_newest_lot, args=(stack, stop_replay), daemon=True
        )
        replayer.start()

        say("\n3. landing a lot whose process drifted: retrain, then shadow and canary")
        drift_landed = datetime.now(timezone.utc)
        land_lots(stack, lots=1, wafers_per_lot=wafers, seed=seed, drift=DRIFTED, first_lot=lots)
        _wait(follower, deadline, lambda: _retrained_and_rolled(follower, drift_landed), "rollout")
        follower.poll()
        say("\n4. summary")
        champion = _summary(stack, say)
        say(
            f"wall time from the first file landed: {first_champion:.0f} s to the first "
            f"champion, {time.monotonic() - first_landed:.0f} s to the end of the drift rollout"
        )
        say(f"every rollout record: yieldops rollout audit --home {stack.home}")
        if keep_running:
            where_to_look(stack, say)
            say("the stack keeps running; Ctrl-C stops it")
            threading.Event().wait()
        return 0 if champion else 1
    except KeyboardInterrupt:
        say("\ninterrupted: stopping every process the demo started")
        return 130
    finally:
        stop_replay.set()
        stack.stop()


def land_lots(stack: DemoStack, **lots: Any) -> list[Path]:
    """Synthetic lots written aside, then moved into the landing zone together, as a
    tester's upload would appear (the sensor never sees half a batch)."""
    from yieldops.synth import PRODUCTS, synthesize

    outbox = stack.home / "outbox"
    paths = synthesize(outbox, product=PRODUCTS[PRODUCT], **lots)
    landed = [stack.landing / path.name for path in paths]
    for path, target in zip(paths, landed):
        path.replace(target)
    return landed


def where_to_look(stack: DemoStack, say: Callable[[str], None]) -> None:
    say(
        "\nThe stack is up:\n"
        f"  Airflow UI   {stack.airflow_url}  (user admin, password {stack.airflow_password})\n"
        f"  Rollouts     {stack.airflow_url}/yieldops/rollouts/\n"
        f"  Data Docs    {stack.airflow_url}/yieldops/data-docs/\n"
        f"  MLflow UI    {stack.mlflow_url}\n"
        f"  Gateway      {stack.gateway_url}/metrics  /v1/routing\n"
        f"  Logs         {stack.home / 'logs'}"
    )


def _wait(follower: RunFollower, deadline: float, done: Callable[[], Any], what: str) -> Any:
    while time.monotonic() < deadline:
        follower.poll()
        result = done()
        if result:
            return result
        time.sleep(3)
    raise TimeoutError(f"no {what} before the demo's time limit")


def champion_serving(stack: DemoStack) -> bool:
    try:
        return httpx.get(f"{stack.gateway_url}/readyz", timeout=5).status_code == 200
    except httpx.HTTPError:
        return False


def _retrained_and_rolled(follower: RunFollower, since: datetime) -> bool:
    """The training after the drifted lot finished, and its rollout too (if it registered)."""
    training = follower.finished_after("yield_training", since)
    if training is None:
        return False
    registered = follower.task_state("yield_training", training["dag_run_id"], "register")
    if registered != "success":
        return True  # the gate rejected it: nothing to roll out
    return follower.finished_after("model_rollout", _time(training["start_date"])) is not None


def replay_newest_lot(stack: DemoStack, stop: threading.Event) -> None:
    """The newest curated lot's dies, looked up again every few seconds: the traffic a model
    serves is the wafers under test now, so the drifted lot is what its successor is judged on."""
    from yieldops.config import product
    from yieldops.serving.replay import load_replay_frame, replay

    rounds = 0
    while not stop.is_set():
        table = load_replay_frame(stack.home / "curated", product(PRODUCT))
        newest = table.subset(table.lots[-1:])
        rounds += 1
        replay(
            stack.gateway_url,
            newest.frame.sample(frac=1, random_state=rounds),  # each round other dies first
            newest.feature_columns,
            rate_per_s=REPLAY_RATE,
            batch_size=REPLAY_BATCH,
            duration_s=REPLAY_REFRESH_SECONDS,
            stop=stop,
        )


def _summary(stack: DemoStack, say: Callable[[str], None]) -> int | None:
    """Files, model versions beside their gate figures, rollout decisions and the champion;
    returns the champion version when MLflow and the gateway agree on it."""
    from mlflow import MlflowClient

    from yieldops.rollout.audit import AuditLog

    client = MlflowClient(tracking_uri=stack.mlflow_url)
    audit = AuditLog(f"sqlite:///{stack.home / 'rollout.db'}")
    try:
        records = audit.rows(model=MODEL)
    finally:
        audit.close()
    lines = [
        *file_lines(f"sqlite:///{stack.home / 'ledger.db'}"),
        "model versions:",
        *version_lines(MODEL, client.search_model_versions(f"name='{MODEL}'")),
        "rollout decisions:",
        *decision_lines(records),
    ]
    for line in lines:
        say(line)
    routing = httpx.get(f"{stack.gateway_url}/v1/routing", timeout=10).json()
    alias = client.get_registered_model(MODEL).aliases.get("champion")
    say(f"champion now: v{alias} (MLflow alias), the gateway serves v{routing['champion']}")
    return int(alias) if alias and int(alias) == routing["champion"] else None


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))
