"""Stopping the demo's services: SIGINT first, SIGTERM after each service's own grace."""

from __future__ import annotations

import sys
import time

from yieldops.demo.processes import Service, stop_services

# Notes which signal stopped it; ignores SIGINT when told to (as a hung shutdown would).
CHILD = """
import signal, sys, time
from pathlib import Path
out = Path(sys.argv[1])
def stopped(sig, frame):
    out.write_text(signal.Signals(sig).name)
    sys.exit(0)
signal.signal(signal.SIGTERM, stopped)
signal.signal(signal.SIGINT, signal.SIG_IGN if sys.argv[2] == "ignore" else stopped)
out.with_suffix(".ready").touch()
while True:
    time.sleep(0.1)
"""


def _started(tmp_path, name: str, on_sigint: str, grace: float) -> Service:
    out = tmp_path / f"{name}.signal"
    service = Service(
        name,
        [sys.executable, "-c", CHILD, str(out), on_sigint],
        {},
        tmp_path / f"{name}.log",
        stop_grace=grace,
    )
    service.start()
    while not out.with_suffix(".ready").exists():
        service.check_running()
        time.sleep(0.05)
    return service


def test_a_service_stops_on_sigint_and_a_hung_one_gets_sigterm_after_its_grace(tmp_path):
    polite = _started(tmp_path, "polite", "stop", grace=30)
    hung = _started(tmp_path, "hung", "ignore", grace=0.5)

    stop_services([polite, hung])

    assert (tmp_path / "polite.signal").read_text() == "SIGINT"
    assert (tmp_path / "hung.signal").read_text() == "SIGTERM"
    assert polite.running_process() is None and hung.running_process() is None
