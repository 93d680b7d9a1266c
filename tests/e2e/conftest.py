"""The demo stack (Airflow standalone, MLflow server, gateway) on free loopback ports,
shared by the end-to-end and browser tests of one session."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def stack(tmp_path_factory):
    from yieldops.demo.stack import DemoStack

    # the browser test's manual run waits for the continuous ingest run's slot: keep it short
    demo = DemoStack(tmp_path_factory.mktemp("e2e") / "home", sensor_timeout_seconds=30)
    demo.start()
    try:
        yield demo
    finally:
        demo.stop()
