"""The production configuration of yieldops on one machine, without Docker, on loopback: a
harness of the checkout (the stack tests, ``scripts/stack-local``, ``benchmarks/bench_stack.py``),
not part of the package.

Airflow with the CeleryExecutor (Redis broker, PostgreSQL metadata and result backend) as
separate ``api-server``, ``scheduler``, ``dag-processor``, ``triggerer`` and worker
processes; an MLflow server with a PostgreSQL store and artifacts on S3; the prediction
gateway with its log on PostgreSQL; the landing zone an S3 prefix whose notifications go to
an SQS queue (ingest in events mode). S3 and SQS are a moto server; PostgreSQL and Redis
are the machine's own. Every process is configured only through its environment
(``AIRFLOW__*``, ``AIRFLOW_CONN_*``, ``YIELDOPS_*``, ``MLFLOW_*``, ``AWS_*``).

Each stack has its own databases (``yieldops_stack_<id>_<role>``) and its own Celery queue,
created at start and removed at stop; ``resources.json`` under the home names them, so the
next start removes what a killed run left, as the pid file does for its processes.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from yieldops.demo.processes import Service, free_port, write_pid_file
from yieldops.demo.stack import PRODUCT, DemoStack, Ports, airflow_healthy
from yieldops.demo.story import (
    DAGS,
    RunFollower,
    champion_serving,
    replay_newest_lot,
    where_to_look,
)
from yieldops.deployment import LOST_WORKER_SETTINGS
from yieldops.landing.s3 import send_new_objects_to_queue

ROOT = Path(__file__).resolve().parents[2]  # the checkout

POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432"
REDIS_URL = "redis://127.0.0.1:6379/1"  # a db of its own; each stack also has its own queue
# As in docker-compose.yaml: Airflow's, MLflow's, ours (ledger, audit), the gateway's log.
DATABASE_ROLES = ("airflow", "mlflow", "yieldops", "predictions_adc")
LANDING_BUCKET, LANDING_PREFIX = "yieldops-landing", "incoming"
ARTIFACT_BUCKET = "mlflow-artifacts"
# moto accepts any credentials: these are no secrets (AWS_ENDPOINT_URL keeps boto3 on moto).
AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",  # pragma: allowlist secret
    "AWS_DEFAULT_REGION": "us-east-1",
}
WORKER_HOSTNAME = "YIELDOPS_WORKER_HOSTNAME"
# What an earlier stack in the same home left; its databases are gone, so this goes too.
EARLIER_STATE = ("airflow", "logs", "curated", "data-docs", "outbox", "gateway-routing.json")
ACTIVE = ["queued", "running"]
# Imported by each worker before it forks its pool, so every task process starts with them
# (Great Expectations, MLflow and scikit-learn take seconds each, in every task otherwise).
WORKER_PRELOAD = [
    "yieldops.ingest",
    "yieldops.validation",
    "yieldops.curated.dataset",
    "yieldops.training.evaluation",
    "yieldops.training.model",
    "yieldops.training.registry",
    "airflow.providers.amazon.aws.hooks.s3",  # the landing zone
    "airflow.providers.common.messaging.triggers.msg_queue",  # stdf_ingest's schedule
    # yieldops_plugin builds its FastAPI app on import, in every task process too
    "airflow.api_fastapi.core_api.security",
]
# Ingest runs started by S3 events only: the sweep's schedule (29 February) has no time
# between the DAG's start date and the next leap day, so catchup-off adds no run at start.
EVENTS_ONLY = {"YIELDOPS_SWEEP_CRON": "0 0 29 2 *"}


def worker_hostname() -> str:
    """``[core] hostname_callable`` of the workers: each worker of a one-machine stack puts
    its own name in the task instances it runs, as workers on separate machines would."""
    return os.environ.get(WORKER_HOSTNAME) or socket.getfqdn()


@dataclass
class ProductionPorts(Ports):
    moto: int = field(default_factory=free_port)


@dataclass
class ProductionStack(DemoStack):
    ports: ProductionPorts = field(default_factory=ProductionPorts)
    workers: int = 2
    worker_concurrency: int = 2
    postgres_url: str = POSTGRES_URL
    redis_url: str = REDIS_URL
    # Environment set last in every process (YIELDOPS_*, AIRFLOW__*): shorter steps, timeouts.
    overrides: dict[str, str] = field(default_factory=dict)
    stack_id: str = field(default_factory=lambda: secrets.token_hex(4))
    jwt_secret: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    api_secret_key: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    fernet_key: str = field(
        default_factory=lambda: base64.urlsafe_b64encode(os.urandom(32)).decode()
    )
    sqs_queue_url: str = ""  # known once the queue exists

    # -- where things are ----------------------------------------------------------------------

    @property
    def moto_url(self) -> str:
        return f"http://127.0.0.1:{self.ports.moto}"

    @property
    def landing_url(self) -> str:
        return f"s3://{LANDING_BUCKET}/{LANDING_PREFIX}"

    @property
    def curated_dir(self) -> Path:
        return self.home / "curated"

    def database(self, role: str) -> str:
        return f"yieldops_stack_{self.stack_id}_{role}"

    def database_url(self, role: str) -> str:
        return f"{self.postgres_url}/{self.database(role)}"

    @property
    def prediction_log_url(self) -> str:
        return self.database_url("predictions_adc")

    @property
    def mlflow_backend_store_uri(self) -> str:
        return self.database_url("mlflow")

    @property
    def mlflow_artifacts_destination(self) -> str:
        return f"s3://{ARTIFACT_BUCKET}/"

    @property
    def celery_queue(self) -> str:
        return f"yieldops-{self.stack_id}"

    @property
    def resources_file(self) -> Path:
        return self.home / "resources.json"

    @property
    def worker_names(self) -> list[str]:
        return [f"worker-{n}" for n in range(1, self.workers + 1)]

    def yieldops_env(self) -> dict[str, str]:
        return {
            **super().yieldops_env(),
            **AWS_ENV,
            "AWS_ENDPOINT_URL": self.moto_url,
            "MLFLOW_S3_ENDPOINT_URL": self.moto_url,
            "YIELDOPS_LANDING_URL": self.landing_url,
            "YIELDOPS_INGEST_TRIGGER": "events",
            "YIELDOPS_SQS_QUEUE_URL": self.sqs_queue_url,
            "YIELDOPS_LEDGER_URL": self.database_url("yieldops"),
            "YIELDOPS_ROLLOUT_DB_URL": self.database_url("yieldops"),
            "YIELDOPS_CURATED_DIR": str(self.curated_dir),  # one folder for every worker
            "YIELDOPS_DATA_DOCS_DIR": str(self.home / "data-docs"),
            **self.overrides,
        }

    def airflow_env(self) -> dict[str, str]:
        metadata = self.database_url("airflow")
        aws = {
            "conn_type": "aws",
            "login": AWS_ENV["AWS_ACCESS_KEY_ID"],
            "password": AWS_ENV["AWS_SECRET_ACCESS_KEY"],
            "extra": {"endpoint_url": self.moto_url, "region_name": AWS_ENV["AWS_DEFAULT_REGION"]},
        }
        return {
            **super().airflow_env(),
            "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": metadata,
            # psycopg 3 is async too; Airflow's default async driver (asyncpg) is not installed
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_ASYNC": metadata,
            "AIRFLOW__CELERY__BROKER_URL": self.redis_url,
            "AIRFLOW__CELERY__RESULT_BACKEND": f"db+{metadata}",
            "AIRFLOW__OPERATORS__DEFAULT_QUEUE": self.celery_queue,
            "AIRFLOW__CELERY__WORKER_CONCURRENCY": str(self.worker_concurrency),
            "AIRFLOW__CORE__PARALLELISM": str(self.workers * self.worker_concurrency),
            **LOST_WORKER_SETTINGS,
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__WORKERS": "1",
            # Shared by every component: tokens the API server signs, workers present.
            "AIRFLOW__API_AUTH__JWT_SECRET": self.jwt_secret,
            "AIRFLOW__API__SECRET_KEY": self.api_secret_key,
            "AIRFLOW__CORE__FERNET_KEY": self.fernet_key,
            "AIRFLOW_CONN_AWS_DEFAULT": json.dumps(aws),
            **self.overrides,
        }

    # -- services ------------------------------------------------------------------------------

    def moto_service(self) -> Service:
        return Service(
            "moto",
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.ports.moto)],
            self.yieldops_env(),
            self.home / "logs" / "moto.log",
            f"{self.moto_url}/moto-api/",
        )

    def airflow_services(self) -> list[Service]:
        """Each Airflow component a process of its own. Logs go to one folder every component
        reads (same machine), so no component serves logs over HTTP."""
        env, logs = self.airflow_env(), self.home / "logs"
        return [
            Service(
                "api-server",
                _airflow("api-server"),
                env,
                logs / "api-server.log",
                self.airflow_health_url,
                healthy=airflow_healthy,  # metadatabase, scheduler, triggerer, dag processor
            ),
            Service("scheduler", _airflow("scheduler", "--skip-serve-logs"), env,
                    logs / "scheduler.log"),
            Service("dag-processor", _airflow("dag-processor"), env, logs / "dag-processor.log"),
            Service("triggerer", _airflow("triggerer", "--skip-serve-logs"), env,
                    logs / "triggerer.log"),
            *(self.worker_service(name) for name in self.worker_names),
        ]  # fmt: skip

    def worker_node(self, name: str) -> str:
        """The Celery node name of worker ``name`` (what Celery's remote control addresses)."""
        return f"{name}@{socket.gethostname()}"

    def worker_service(self, name: str) -> Service:
        node = self.worker_node(name)
        return Service(
            name,
            _airflow("celery", "worker", "--celery-hostname", node, "--skip-serve-logs",
                     "--without-mingle", "--without-gossip"),
            {
                **self.airflow_env(),
                "AIRFLOW__CORE__HOSTNAME_CALLABLE": f"{__name__}.worker_hostname",
                "PYTHONPATH": _checkout_on_path(),
                "AIRFLOW__CELERY__EXTRA_CELERY_CONFIG": json.dumps({"imports": WORKER_PRELOAD}),
                WORKER_HOSTNAME: name,
            },
            self.home / "logs" / f"{name}.log",
            ready_line=f"{node} ready.",
        )  # fmt: skip

    def worker(self, name: str) -> Service:
        return next(s for s in self.services if s.name == name)

    def restart_worker(self, name: str) -> None:
        worker = self.worker(name)
        worker.start()
        write_pid_file(self.pid_file, self.services)
        worker.wait_ready(timeout=120)

    # -- life cycle ----------------------------------------------------------------------------

    def prepare(self, say=print) -> None:
        """Fresh databases, the moto server with the S3 buckets and the SQS queue."""
        left = release_resources(self.resources_file, self.postgres_url)
        if left:
            say(f"removed what an earlier run left: {', '.join(left)}")
        for name in EARLIER_STATE:
            _remove(self.home / name)
        super().prepare(say)
        self.resources_file.write_text(
            json.dumps(
                {
                    "databases": [self.database(role) for role in DATABASE_ROLES],
                    "redis_url": self.redis_url,
                    "celery_queue": self.celery_queue,
                }
            )
        )
        for role in DATABASE_ROLES:
            create_database(self.postgres_url, self.database(role))
        moto = self.moto_service()
        self.launch([moto])
        moto.wait_ready(timeout=60)
        self.sqs_queue_url = self._create_buckets_and_queue()

    def prepare_airflow(self, say=print) -> None:
        say("creating Airflow's tables ...")
        with open(self.home / "logs" / "airflow-db-migrate.log", "ab") as log:
            subprocess.run(
                _airflow("db", "migrate"),
                env=self.airflow_env(),
                stdout=log,
                stderr=subprocess.STDOUT,
                check=True,
            )

    def _create_buckets_and_queue(self) -> str:
        """The two buckets, and the queue that receives the landing prefix's new objects."""
        s3, sqs = self.aws("s3"), self.aws("sqs")
        for bucket in (LANDING_BUCKET, ARTIFACT_BUCKET):
            s3.create_bucket(Bucket=bucket)
        queue_url = send_new_objects_to_queue(
            s3, sqs, LANDING_BUCKET, f"{LANDING_PREFIX}/", "yieldops-landed"
        )
        sqs.purge_queue(QueueUrl=queue_url)  # the s3:TestEvent would start an empty run
        return queue_url

    def stop(self) -> None:
        super().stop()
        release_resources(self.resources_file, self.postgres_url)

    # -- using it ------------------------------------------------------------------------------

    def aws(self, service: str):
        """A boto3 client on the stack's moto server."""
        import boto3

        return boto3.client(
            service,
            endpoint_url=self.moto_url,
            region_name=AWS_ENV["AWS_DEFAULT_REGION"],
            aws_access_key_id=AWS_ENV["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=AWS_ENV["AWS_SECRET_ACCESS_KEY"],
        )

    def land(self, paths: Sequence[Path]) -> list[str]:
        """Upload files into the landing prefix, as testers would; returns their landing keys."""
        s3 = self.aws("s3")
        for path in paths:
            s3.upload_file(str(path), LANDING_BUCKET, f"{LANDING_PREFIX}/{path.name}")
        return [path.name for path in paths]

    def ledger(self):
        from yieldops.landing.ledger import Ledger

        return Ledger(self.database_url("yieldops"))

    def where_to_look(self, say: Callable[[str], None] = print) -> None:
        where_to_look(self, say)
        say(
            f"  Workers      {', '.join(self.worker_names)} (Celery queue {self.celery_queue} "
            f"on {self.redis_url})\n"
            f"  PostgreSQL   {', '.join(self.database(r) for r in DATABASE_ROLES)} "
            f"on {self.postgres_url}\n"
            f"  Landing      {self.landing_url} on {self.moto_url} (S3 events -> SQS)"
        )


def _checkout_on_path() -> str:
    """PYTHONPATH with the checkout first: a worker imports this module for its hostname."""
    return os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))


def _airflow(*args: str) -> list[str]:
    return [sys.executable, "-m", "airflow", *args]


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


# -- databases and queues of a stack ---------------------------------------------------------


def _admin_engine(postgres_url: str):
    from sqlalchemy import create_engine

    return create_engine(f"{postgres_url}/postgres", isolation_level="AUTOCOMMIT")


def create_database(postgres_url: str, name: str) -> None:
    _execute_as_admin(postgres_url, "CREATE DATABASE {}", name)


def drop_database(postgres_url: str, name: str) -> None:
    # FORCE: connections a killed run left open would block the drop.
    _execute_as_admin(postgres_url, "DROP DATABASE IF EXISTS {} WITH (FORCE)", name)


def _execute_as_admin(postgres_url: str, statement: str, name: str) -> None:
    from sqlalchemy import text

    engine = _admin_engine(postgres_url)
    try:
        with engine.connect() as conn:
            quoted = conn.dialect.identifier_preparer.quote(name)
            conn.execute(text(statement.format(quoted)))
    finally:
        engine.dispose()


def delete_celery_queue(redis_url: str, queue: str) -> None:
    """The queue's messages and bindings, and the unacknowledged messages of killed workers
    (which Redis would otherwise put back one day); the broker db may serve other stacks."""
    import redis

    client = redis.Redis.from_url(redis_url)
    try:
        keys = list(client.scan_iter(match=f"*{queue}*"))
        if keys:
            client.delete(*keys)
        for tag, raw in client.hscan_iter("unacked"):
            _message, exchange, routing_key = json.loads(raw)
            if queue in (exchange, routing_key):
                client.hdel("unacked", tag)
                client.zrem("unacked_index", tag)
    finally:
        client.close()


def release_resources(path: Path, postgres_url: str) -> list[str]:
    """Drop the databases and the Celery queue ``path`` names; returns what was removed."""
    try:
        recorded = json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        return []
    for name in recorded["databases"]:
        drop_database(postgres_url, name)
    delete_celery_queue(recorded["redis_url"], recorded["celery_queue"])
    path.unlink()
    return [*recorded["databases"], f"queue {recorded['celery_queue']}"]


# -- a batch of files through the stack ------------------------------------------------------


@dataclass(frozen=True)
class BatchResult:
    """When a batch landed and when its files were claimed and finished (ledger times)."""

    files: int
    landed_at: datetime
    first_claimed_at: datetime
    last_finished_at: datetime
    statuses: dict[str, int]

    @property
    def files_per_minute(self) -> float:
        """Landing to the last file finished: what a tester sees, the SQS delay included."""
        return self.files / ((self.last_finished_at - self.landed_at).total_seconds() / 60)

    @property
    def processing_files_per_minute(self) -> float:
        """First claim to the last file finished: the workers' throughput."""
        return self.files / ((self.last_finished_at - self.first_claimed_at).total_seconds() / 60)

    def describe(self) -> str:
        return (
            f"{self.files} files {self.statuses}: {self.files_per_minute:.1f} files/min from "
            f"landing, {self.processing_files_per_minute:.1f} files/min from the first claim"
        )


def synthetic_files(
    stack: ProductionStack, files: int, *, first_lot: int = 0, wafers: int = 1, seed: int = 0
) -> list[Path]:
    """``files`` small lots of the demo product from a stable process (no drift, so the
    gate passes), one file each, written aside under home."""
    from yieldops.synth import PRODUCTS, synthesize

    return synthesize(
        stack.home / "outbox" / f"lots-{first_lot}",
        product=PRODUCTS[PRODUCT],
        lots=files,
        wafers_per_lot=wafers,
        seed=seed,
        first_lot=first_lot,
        drift=0.0,
    )


def ingest_batch(
    stack: ProductionStack, paths: Sequence[Path], timeout: float = 600
) -> tuple[list[str], BatchResult]:
    """Land ``paths`` and wait until the ledger has finished every one of them."""
    landed_at = datetime.now(timezone.utc)
    keys = stack.land(paths)
    entries = wait_ingested(stack, keys, timeout)
    result = BatchResult(
        files=len(keys),
        landed_at=landed_at,
        first_claimed_at=min(e.claimed_at for e in entries),
        last_finished_at=max(e.finished_at for e in entries),
        statuses=dict(Counter(e.status for e in entries)),
    )
    return keys, result


def wait_ingested(stack: ProductionStack, keys: Sequence[str], timeout: float) -> list[Any]:
    """The ledger entries of ``keys`` once each is curated or quarantined."""
    from yieldops.landing.ledger import FINAL

    deadline, wanted = time.monotonic() + timeout, set(keys)
    ledger = stack.ledger()
    try:
        while True:
            entries = [e for e in ledger.entries() if e.source_key in wanted]
            if len(entries) == len(keys) and all(e.status in FINAL for e in entries):
                return entries
            if time.monotonic() > deadline:
                done = sum(e.status in FINAL for e in entries)
                raise TimeoutError(f"{done} of {len(keys)} files finished in {timeout:.0f} s")
            time.sleep(1)
    finally:
        ledger.close()


def follow_pipeline(
    stack: ProductionStack,
    say: Callable[[str], None] = print,
    timeout: float = 900,
    quiet_seconds: float = 10,
) -> None:
    """Print DAG runs as they change until none has been queued or running for
    ``quiet_seconds`` (the run an asset event starts is created within seconds); curated
    dies are replayed to the gateway once a champion serves, so rollout steps get traffic."""
    stop_replay = threading.Event()
    replayer = threading.Thread(target=_replay_once_serving, args=(stack, stop_replay), daemon=True)
    replayer.start()
    try:
        with stack.airflow() as api:
            follower = RunFollower(api, say)
            _until_quiet(api, quiet_seconds, timeout, follower.poll)
    finally:
        stop_replay.set()
        replayer.join(timeout=30)


def _until_quiet(api, quiet_seconds: float, timeout: float, on_poll: Callable[[], None]) -> None:
    """Until no DAG run has been queued or running for ``quiet_seconds``."""
    deadline, quiet_since = time.monotonic() + timeout, time.monotonic()
    while time.monotonic() - quiet_since < quiet_seconds:
        if time.monotonic() > deadline:
            raise TimeoutError(f"DAG runs still active after {timeout:.0f} s")
        on_poll()
        if any(_active_runs(api, dag_id) for dag_id in DAGS):
            quiet_since = time.monotonic()
        time.sleep(1)


def _active_runs(api, dag_id: str) -> list[dict[str, Any]]:
    response = api.get(f"/dags/{dag_id}/dagRuns", params={"state": ACTIVE, "limit": 100})
    response.raise_for_status()
    return response.json()["dag_runs"]


def _replay_once_serving(stack: ProductionStack, stop: threading.Event) -> None:
    while not champion_serving(stack):
        if stop.wait(2):
            return
    replay_newest_lot(stack, stop)


def set_paused(stack: ProductionStack, dag_ids: Sequence[str], paused: bool) -> None:
    with stack.airflow() as api:
        for dag_id in dag_ids:
            api.patch(f"/dags/{dag_id}", json={"is_paused": paused}).raise_for_status()
