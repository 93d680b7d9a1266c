"""Stopping the demo's services: SIGINT first, SIGTERM after each service's own grace."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from yieldops.demo.processes import Service, stop_services

# Notes which signal stopped it; ignores SIGINT when told to (as a hung shutdown would).
# Given another name, first starts a copy of itself under it that ignores SIGINT, in the
# same process group, and does not wait for it (as Airflow standalone's executor workers).
CHILD = """
import os, signal, subprocess, sys, time
from pathlib import Path
out = Path(sys.argv[1])
if len(sys.argv) > 3:
    subprocess.Popen([sys.executable, __file__, out.with_name(sys.argv[3] + ".signal"), "ignore"])
def stopped(sig, frame):
    out.write_text(signal.Signals(sig).name)
    sys.exit(0)
signal.signal(signal.SIGTERM, stopped)
signal.signal(signal.SIGINT, signal.SIG_IGN if sys.argv[2] == "ignore" else stopped)
out.with_suffix(".ready").write_text(str(os.getpid()))
while True:
    time.sleep(0.1)
"""


def _ready(path) -> bool:
    return path.with_suffix(".ready").exists()


def _started(tmp_path, name: str, on_sigint: str, grace: float, *child: str) -> Service:
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    service = Service(
        name,
        [sys.executable, str(script), str(tmp_path / f"{name}.signal"), on_sigint, *child],
        {},
        tmp_path / f"{name}.log",
        stop_grace=grace,
    )
    service.start()
    while not all(_ready(tmp_path / f"{n}.signal") for n in (name, *child)):
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


def test_nothing_a_service_started_outlives_it(tmp_path):
    leader = _started(tmp_path, "leader", "stop", 30, "worker")
    worker = int((tmp_path / "worker.ready").read_text())

    stop_services([leader])

    assert (tmp_path / "leader.signal").read_text() == "SIGINT"
    assert _gone(worker), "the worker the leader left behind still runs"


def _gone(pid: int) -> bool:
    """No such process, or a zombie (killed, not yet reaped by init): polled for a moment."""
    for _ in range(50):
        try:
            if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
                return True
        except FileNotFoundError:
            return True
        time.sleep(0.1)
    return False
