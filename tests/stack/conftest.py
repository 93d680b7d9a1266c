"""The production stack (CeleryExecutor with two workers, PostgreSQL, Redis, MLflow server,
gateway, S3 and SQS on moto), started once for the session on loopback."""

from __future__ import annotations

import socket
from urllib.parse import urlsplit

import pytest
from tests.stack.production import EVENTS_ONLY, POSTGRES_URL, REDIS_URL

# Short enough for a test, and nothing starts an ingest run but S3 events.
TEST_SETTINGS = {
    **EVENTS_ONLY,
    # A lost worker's tasks, sooner than in production (LOST_WORKER_SETTINGS): one it was
    # running fails after this long without heartbeat (and is retried) ...
    "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "20",
    "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "5",
    # ... one it had taken but not started is queued again after this long queued.
    "AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT": "60",
    "AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT_CHECK_INTERVAL": "5",
    # A rollout's skipped steps are a chain: one task further per scheduler loop.
    "AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME": "0.2",
    "YIELDOPS_ROLLOUT_STEP_SECONDS": "5",
    "YIELDOPS_ROLLOUT_MIN_SAMPLES": "50",
    "YIELDOPS_ROLLOUT_POLL_SECONDS": "1",
    "YIELDOPS_ROLLOUT_CANARY_STEPS": "50,100",
}


def _answers(url: str) -> bool:
    parts = urlsplit(url)
    try:
        socket.create_connection((parts.hostname, parts.port), timeout=2).close()
    except OSError:
        return False
    return True


@pytest.fixture(scope="session")
def stack(tmp_path_factory):
    from tests.stack.production import ProductionStack

    missing = [url for url in (POSTGRES_URL, REDIS_URL) if not _answers(url)]
    if missing:
        pytest.skip(f"the production stack needs PostgreSQL and Redis: nothing at {missing}")
    production = ProductionStack(
        tmp_path_factory.mktemp("stack") / "home", overrides=dict(TEST_SETTINGS)
    )
    production.start()
    try:
        yield production
    finally:
        production.stop()


@pytest.fixture(scope="session")
def api(stack):
    with stack.airflow() as client:
        yield client
