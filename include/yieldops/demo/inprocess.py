"""``yieldops run FILES...``: the three DAGs executed in this process with ``dag.test()``,
for people without an Airflow deployment. Airflow-facing (it imports Airflow, after
pointing it at a throwaway home); the gateway a rollout steers is a local child process.

1. the files are copied into the landing zone and ``stdf_ingest`` runs once;
2. each product that got curated data and has a deployment target trains
   (``yield_training``); a registered challenger is rolled out (``model_rollout``) to a
   local gateway, with curated dies replayed to it while the rollout's steps run.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ..layout import dags_folder, plugins_folder
from ..settings import load_settings
from .processes import Service, free_port
from .stack import DEMO_ROLLOUT
from .story import report_files

EXIT_OK, EXIT_BAD_INPUT = 0, 1


def configure_airflow(home: Path) -> None:
    """Environment for an in-process Airflow on SQLite under ``home`` (before importing it)."""
    os.environ.update(
        {
            "YIELDOPS_HOME": str(home),
            "AIRFLOW_HOME": str(home / "airflow"),
            "AIRFLOW__CORE__DAGS_FOLDER": str(dags_folder()),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(plugins_folder()),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            **DEMO_ROLLOUT,
        }
    )
    os.environ.pop("MLFLOW_TRACKING_URI", None)  # the local store under home
    subprocess.run(
        [sys.executable, "-m", "airflow", "db", "migrate"], check=True, capture_output=True
    )


def run_files(files: Sequence[Path], home: Path, say: Callable[[str], None] = print) -> int:
    """0 when every file was curated and every run ended as designed; 1 when a file was
    quarantined or a run failed."""
    home = Path(home).resolve()
    configure_airflow(home)
    landing = home / "landing"
    landing.mkdir(parents=True, exist_ok=True)
    for path in files:
        shutil.copy2(path, landing / Path(path).name)
    outcome = EXIT_OK
    ingest = _dag("stdf_ingest").test()
    say(f"stdf_ingest: {ingest.state}")
    report_files(load_settings().ledger_url, say)
    if ingest.state != "success":
        outcome = EXIT_BAD_INPUT
    for product in _curated_products(home):
        outcome |= _train_and_roll_out(product, home, say)
    return outcome


def _train_and_roll_out(product: str, home: Path, say: Callable[[str], None]) -> int:
    from yieldops.rollout.targets import targets_for

    targets = targets_for(product)
    if not targets:
        say(f"{product}: no deployment target in targets.yaml; not trained")
        return EXIT_OK
    training = _dag("yield_training").test(run_conf={"product": product})
    registered = _state(training, "register") == "success"
    say(
        f"yield_training {product}: {training.state} ({'registered' if registered else 'rejected'})"
    )
    if training.state != "success" or not registered:
        return EXIT_OK if training.state == "success" else EXIT_BAD_INPUT
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
        rollout = _dag("model_rollout").test(run_conf={"model": f"yield-{product}"})
        say(f"model_rollout {product}: {rollout.state} (yieldops rollout audit: the verdicts)")
        return EXIT_OK
    finally:
        stop.set()
        for gateway in gateways:
            gateway.stop()


def _gateway(home: Path, product: str, conn_id: str) -> Service:
    """A local gateway for one target, and the Airflow connection that names it."""
    port, token = free_port(), os.urandom(16).hex()
    log_url = f"sqlite:///{home / f'predictions-{conn_id}.db'}"
    connection = {
        "conn_type": "http",
        "host": "127.0.0.1",
        "port": port,
        "password": token,
        "extra": {"prediction_log_url": log_url},
    }
    os.environ[f"AIRFLOW_CONN_{conn_id.upper()}"] = json.dumps(connection)
    env = {
        **os.environ,
        "YIELDOPS_GATEWAY_MODEL": f"yield-{product}",
        "YIELDOPS_GATEWAY_ADMIN_TOKEN": token,
        "YIELDOPS_GATEWAY_LOG_URL": log_url,
        "YIELDOPS_GATEWAY_ROUTING_PATH": str(home / f"routing-{conn_id}.json"),
        "YIELDOPS_GATEWAY_PORT": str(port),
    }
    return Service(
        f"gateway {conn_id}",
        [sys.executable, "-m", "yieldops.serving"],
        env,
        home / "logs" / f"gateway-{conn_id}.log",
        f"http://127.0.0.1:{port}/healthz",
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


def _state(run: Any, task_id: str) -> str | None:
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session

    with create_session() as session:
        ti = (
            session.query(TaskInstance)
            .filter_by(dag_id=run.dag_id, run_id=run.run_id, task_id=task_id)
            .one_or_none()
        )
        return ti.state if ti else None
