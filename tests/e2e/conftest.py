"""The demo stack (Airflow standalone, MLflow server, gateway) on free loopback ports,
shared by the end-to-end and browser tests of one session."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def stack(tmp_path_factory):
    """The stack, with three baseline lots landed as soon as it is up (as `make demo` does):
    the pipeline runs while the browser test works in the UI."""
    from yieldops.demo.stack import DemoStack
    from yieldops.demo.story import land_lots

    # the browser test's manual run waits for the continuous ingest run's slot: keep it short
    demo = DemoStack(tmp_path_factory.mktemp("e2e") / "home", sensor_timeout_seconds=30)
    demo.start()
    try:
        land_lots(demo, lots=3, wafers_per_lot=2, seed=0, drift=0.3)
        yield demo
    finally:
        demo.stop()
