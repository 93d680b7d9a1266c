"""Child processes of the demo: started in their own process group, stopped by that pid.

A pid file lists what a run started, so a run that was killed without cleaning up is
cleaned up by the next one (only the recorded pids whose command line still matches).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Service:
    """One long-running command, its log file, and the URL that says it is ready."""

    name: str
    argv: Sequence[str]
    env: Mapping[str, str]
    log_path: Path
    ready_url: str
    process: subprocess.Popen | None = field(default=None, repr=False)

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                list(self.argv),
                env=dict(self.env),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # its own group: stopping it stops its children
            )

    def wait_ready(self, timeout: float, ready: Callable[[httpx.Response], bool] | None = None):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(
                    f"{self.name} exited with {self.process.returncode}; see {self.log_path}"
                )
            try:
                response = httpx.get(self.ready_url, timeout=5)
                if ready(response) if ready else response.status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(1)
        raise TimeoutError(f"{self.name} not ready after {timeout:.0f} s; see {self.log_path}")

    def stop(self, timeout: float = 30) -> None:
        if self.process is not None and self.process.poll() is None:
            # Some grandchildren start groups of their own (Airflow's LocalExecutor workers):
            # note them first, so none outlives the stack.
            family = descendants(self.process.pid)
            stop_group(self.process.pid, timeout)
            self.process.wait(timeout=5)
            for pid in family:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)


def stop_group(pid: int, timeout: float = 30) -> None:
    """SIGINT (Airflow standalone stops its components on it), then SIGTERM, then SIGKILL,
    to the process group led by ``pid``."""
    for sig, wait in ((signal.SIGINT, timeout), (signal.SIGTERM, 10), (signal.SIGKILL, 5)):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if not _group_alive(pid):
                return
            time.sleep(0.2)


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (children of children...), from /proc."""
    found: list[int] = []
    pending = [pid]
    while pending:
        parent = pending.pop()
        for task in Path(f"/proc/{parent}/task").glob("*/children"):
            try:
                children = [int(c) for c in task.read_text().split()]
            except OSError:
                continue
            found += children
            pending += children
    return found


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    # A zombie leader of our own child still counts until reaped; reap it if it is ours.
    try:
        done, _ = os.waitpid(pgid, os.WNOHANG)
        return done == 0
    except ChildProcessError:
        return True


def write_pid_file(path: Path, services: Sequence[Service]) -> None:
    started = {s.name: {"pid": s.process.pid, "argv": list(s.argv)} for s in services if s.process}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(started, indent=2))


def stop_leftovers(path: Path) -> list[str]:
    """Stop what a previous run recorded and left running; returns their names."""
    try:
        recorded = json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        return []
    stopped = []
    for name, entry in recorded.items():
        if _command_line(entry["pid"])[:2] == entry["argv"][:2]:
            stop_group(entry["pid"], timeout=15)
            stopped.append(name)
    path.unlink(missing_ok=True)
    return stopped


def _command_line(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]
