"""``yieldops run FILES...``: the three DAGs executed in this process with ``dag.test()``,
for people without an Airflow deployment. Airflow-facing (it imports Airflow, after
pointing it at a throwaway home); the gateway a rollout steers is a local child process.

1. the files are copied into the landing zone and ``stdf_ingest`` runs once;
2. each product that got curated data trains (``yield_training``); a registered
   challenger of a product with a deployment target is rolled out (``model_rollout``) to
   a local gateway, with curated dies replayed to it while the rollout's steps run.

The console gets one line per step and outcome; Airflow's logs (every task's), and
whatever else this process and its children print, go to a log file named at the start
and at the end.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

from ..layout import dags_folder, plugins_folder
from ..names import model_name
from ..serving.settings import GatewaySettings
from ..settings import load_settings
from .processes import Service, free_port
from .stack import DEMO_ROLLOUT
from .summary import gate_checks, metric_lines, wrap

EXIT_OK, EXIT_BAD_INPUT = 0, 1
# How a rollout may end as designed: the challenger serves, it was judged and rejected, or
# it never got enough evidence to be judged (aborted, the version untouched).
ROLLOUT_ENDS = ("champion", "rejected", "aborted")


def configure_airflow(home: Path) -> None:
    """Environment for an in-process Airflow on SQLite under ``home`` (before importing it)."""
    os.environ.update(
        {
            "YIELDOPS_HOME": str(home),
            "AIRFLOW_HOME": str(home / "airflow"),
            "AIRFLOW__CORE__DAGS_FOLDER": str(dags_folder()),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(plugins_folder()),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            # The files are handed over finished: one that is not is judged at once, never
            # waited for (yieldops.completeness).
            "YIELDOPS_INCOMPLETE_QUIET_SECONDS": "0",
            "YIELDOPS_INCOMPLETE_MAX_AGE_SECONDS": "0",
            **DEMO_ROLLOUT,
        }
    )
    os.environ.pop("MLFLOW_TRACKING_URI", None)  # the local store under home
    subprocess.run(
        [sys.executable, "-m", "airflow", "db", "migrate"], check=True, capture_output=True
    )


def run_files(files: Sequence[Path], home: Path) -> int:
    """0 when every file was curated and every run ended as designed; 1 when a file was
    quarantined or a run failed."""
    home = Path(home).resolve()
    log_path = home / "logs" / f"run-{datetime.now():%Y%m%d-%H%M%S}.log"
    print(f"yieldops run: {len(files)} file(s), home {home}; full logs: {log_path}", flush=True)
    try:
        with _logs_to(log_path) as say:
            return _run(files, home, say)
    finally:
        print(f"full logs: {log_path}; rollout records: yieldops rollout audit --home {home}")


@contextmanager
def _logs_to(log_path: Path) -> Iterator[Callable[[str], None]]:
    """Standard output and error of this process, and so of its children, go to
    ``log_path`` (Airflow logs to them, from its own handlers); the ``say`` yielded prints a
    step line on the console, and in the log too, where it marks what the lines after it are."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    console = os.fdopen(os.dup(1), "w", buffering=1)
    with open(log_path, "ab") as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)

    def say(line: str) -> None:
        console.write("".join(f"{part}\n" for part in wrap(line, indent="")))
        print(f"\n>>> {line}\n", flush=True)

    try:
        yield say
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        for fd, original in zip((1, 2), saved):
            os.dup2(original, fd)
            os.close(original)
        console.close()


def _run(files: Sequence[Path], home: Path, say: Callable[[str], None]) -> int:
    configure_airflow(home)
    landing = home / "landing"
    landing.mkdir(parents=True, exist_ok=True)
    for path in files:
        shutil.copy2(path, landing / Path(path).name)
    ingest = _dag("stdf_ingest").test()
    for name in dict.fromkeys(Path(path).name for path in files):
        say(f"ingest {name}: {_file_outcome(name, ingest.run_id)}")
    outcome = EXIT_OK if ingest.state == "success" else EXIT_BAD_INPUT
    for product in _curated_products(home):
        outcome |= _train_and_roll_out(product, home, say)
    return outcome


def _file_outcome(name: str, run_id: str) -> str:
    """What the ingest run did with the landed file ``name``, from the ledger."""
    from yieldops.landing.ledger import CURATED, Ledger

    ledger = Ledger(load_settings().ledger_url)
    try:
        entries = [e for sha in ledger.sha256_of(key=name) if (e := ledger.get(sha))]
    finally:
        ledger.close()
    # The content this run took under that name, else what an earlier run did with it.
    entry = next((e for e in entries if e.dag_run_id == run_id), next(iter(entries), None))
    if entry is None:
        return "not claimed (see the log)"
    if entry.source_key != name:
        return f"same content as {entry.source_key} ({entry.status}); not ingested again"
    if entry.dag_run_id != run_id:
        return f"{entry.status} by an earlier run; not ingested again"
    if entry.status == CURATED and entry.output:
        return f"curated {_dies(Path(entry.output))} dies of lot {entry.lot_id}"
    return f"{entry.status} ({entry.reason})"


def _dies(curated_file: Path) -> int:
    import pyarrow.parquet as pq

    return pq.read_metadata(curated_file / "parts.parquet").num_rows


def _train_and_roll_out(product: str, home: Path, say: Callable[[str], None]) -> int:
    from yieldops.rollout.targets import targets_for

    training = _dag("yield_training").test(run_conf={"product": product})
    registered = _returned(training, "register")
    say(f"train {product}: {_training_outcome(training, registered, home)}")
    if registered is None:
        return EXIT_OK if training.state == "success" else EXIT_BAD_INPUT
    model, version = registered["model"], registered["version"]
    targets = targets_for(product)
    if not targets:
        say(f"rollout {model} v{version}: not rolled out, no deployment target in targets.yaml")
        return EXIT_OK
    gateways = [_gateway(home, product, t.conn_id) for t in targets]
    stop = threading.Event()
    try:
        for gateway in gateways:
            gateway.start()
            gateway.wait_ready(timeout=120)
        replayers = [
            threading.Thread(target=_replay, args=(home, product, g.ready_url, stop), daemon=True)
            for g in gateways
        ]
        for replayer in replayers:
            replayer.start()
        _dag("model_rollout").test(run_conf={"model": model})
    finally:
        stop.set()
        for gateway in gateways:
            gateway.stop()
    status, reason = _rollout_status(home, model, version)
    say(f"rollout {model} v{version}: {status}" + (f" ({reason})" if reason else ""))
    return EXIT_OK if status in ROLLOUT_ENDS else EXIT_BAD_INPUT


def _training_outcome(training: Any, registered: dict | None, home: Path) -> str:
    """``registered yield-P v1 (accuracy 0.8966 vs no skill 0.8527, ...)``, or why not."""
    if registered is not None:
        model, version = registered["model"], registered["version"]
        tags = _mlflow(home).get_model_version(model, str(version)).tags
        return f"registered {model} v{version} ({', '.join(metric_lines(gate_checks(tags)))})"
    skipped = _returned(training, "not_enough_data")
    if skipped is not None:
        return f"skipped: {skipped['reason'].split(': ', 1)[-1]}"  # the reason names the product
    rejected = _returned(training, "reject")
    if rejected is not None:
        failed = [r for r in rejected["reasons"] if "FAIL" in r] or rejected["reasons"]
        return f"rejected by the gate ({'; '.join(failed)})"
    return f"{training.state}, nothing registered (see the log)"


def _rollout_status(home: Path, model: str, version: int) -> tuple[str, str]:
    """The version's rollout status and reason, as model_rollout tagged them in MLflow."""
    tags = _mlflow(home).get_model_version(model, str(version)).tags
    status = tags.get("rollout.status")
    if status is None:
        return "not decided, the rollout failed (see the log)", ""
    return status, tags.get("rollout.reason", "")


def _mlflow(home: Path) -> Any:
    from mlflow import MlflowClient

    from yieldops.training.registry import default_tracking_uri

    return MlflowClient(tracking_uri=default_tracking_uri(home))


def _gateway(home: Path, product: str, conn_id: str) -> Service:
    """A local gateway for one target, and the Airflow connection that names it."""
    gateway = GatewaySettings(
        model_name=model_name(product),
        routing_path=home / f"routing-{conn_id}.json",
        log_url=f"sqlite:///{home / f'predictions-{conn_id}.db'}",
        admin_token=os.urandom(16).hex(),
        port=free_port(),
    )
    os.environ[f"AIRFLOW_CONN_{conn_id.upper()}"] = json.dumps(gateway.airflow_connection())
    return Service(
        f"gateway {conn_id}",
        [sys.executable, "-m", "yieldops.serving"],
        {**os.environ, **gateway.to_environment()},
        home / "logs" / f"gateway-{conn_id}.log",
        f"{gateway.url}/healthz",
    )


def _replay(home: Path, product: str, health_url: str, stop: threading.Event) -> None:
    """Curated dies to the gateway once it serves a champion (none before the first one)."""
    import httpx

    from yieldops.config import product as product_config
    from yieldops.serving.replay import load_replay_frame, replay

    base = health_url.removesuffix("/healthz")
    while not stop.wait(1):
        try:
            if httpx.get(f"{base}/readyz", timeout=5).status_code == 200:
                break
        except httpx.HTTPError:
            continue
    else:
        return
    table = load_replay_frame(home / "curated", product_config(product))
    replay(base, table.frame, table.feature_columns, rate_per_s=100, batch_size=10, stop=stop)


def _curated_products(home: Path) -> list[str]:
    from urllib.parse import unquote

    root = home / "curated"
    return sorted(unquote(p.name.removeprefix("product=")) for p in root.glob("product=*"))


def _dag(dag_id: str) -> Any:
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=dags_folder() / f"{dag_id}.py")
    if bag.import_errors:
        raise RuntimeError(f"{dag_id}: {bag.import_errors}")
    return bag.dags[dag_id]


def _returned(run: Any, task_id: str) -> Any:
    """What a task of the run returned (its XCom), or None when it did not run or failed."""
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        row = (
            session.query(XComModel)
            .filter_by(dag_id=run.dag_id, run_id=run.run_id, task_id=task_id, key="return_value")
            .one_or_none()
        )
        return None if row is None else XComModel.deserialize_value(row)
