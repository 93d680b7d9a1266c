"""Child processes of the demo: started in their own process group, stopped by that pid.

A pid file lists what a run started, so a run that was killed without cleaning up is
cleaned up by the next one (only the recorded pids that are still the processes it started).
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
    """One long-running command, its log file, and what says it is ready."""

    name: str
    argv: Sequence[str]
    env: Mapping[str, str]
    log_path: Path
    # Ready when this URL answers 200 (or what ``healthy`` accepts); empty: once started.
    ready_url: str = ""
    healthy: Callable[[httpx.Response], bool] | None = field(default=None, repr=False)
    # For a service without HTTP: ready once its log shows this line (after this start).
    ready_line: str = ""
    # Seconds between SIGINT (a graceful stop) and SIGTERM when it has not stopped by then.
    stop_grace: float = 30
    process: subprocess.Popen | None = field(default=None, repr=False)
    _log_start: int = field(default=0, repr=False)

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log_start = self.log_path.stat().st_size if self.log_path.exists() else 0
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                list(self.argv),
                env=dict(self.env),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # its own group: stopping it stops its children
            )

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not self.ready():
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"{self.name} not ready after {timeout:.0f} s; see {self.log_path}"
                )
            time.sleep(1)

    def ready(self) -> bool:
        """Whether it is ready; raises when it has exited."""
        self.check_running()
        if self.ready_line:
            with open(self.log_path, "rb") as log:
                log.seek(self._log_start)
                return self.ready_line.encode() in log.read()
        if not self.ready_url:
            return True
        try:
            response = httpx.get(self.ready_url, timeout=5)
        except httpx.HTTPError:
            return False
        return self.healthy(response) if self.healthy else response.status_code == 200

    def check_running(self) -> None:
        if self.process is not None and self.process.poll() is not None:
            raise RuntimeError(
                f"{self.name} exited with {self.process.returncode}; see {self.log_path}"
            )

    def stop(self) -> None:
        stop_services([self])

    def kill(self) -> None:
        """SIGKILL to its group and every descendant at once, as a machine that dies would."""
        process = self.running_process()
        if process is not None:
            family = descendants(process.pid)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            _kill_all(family)
            process.wait(timeout=10)

    def running_process(self) -> subprocess.Popen | None:
        return self.process if self.process is not None and self.process.poll() is None else None


def stop_services(services: Sequence[Service]) -> None:
    """Stop services together, each with its whole process tree and its own grace."""
    running = {p: s.stop_grace for s in services if (p := s.running_process()) is not None}
    # Some grandchildren start groups of their own (Airflow's task processes):
    # note them first, so none outlives the stack.
    families = [descendants(p.pid) for p in running]
    stop_groups({p.pid: grace for p, grace in running.items()})
    for process, family in zip(running, families):
        process.wait(timeout=5)
        _kill_all(family)


def _kill_all(pids: Sequence[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def stop_groups(graces: Mapping[int, float]) -> None:
    """SIGINT (Airflow standalone stops its components on it) to the process groups led by
    the keys, all at once; SIGTERM to a group still alive after its grace, SIGKILL 10 s later."""
    if not graces:
        return
    start = time.monotonic()
    escalations = {
        pid: [(grace, signal.SIGTERM), (grace + 10, signal.SIGKILL)]
        for pid, grace in graces.items()
    }
    alive = list(graces)
    _signal_groups(alive, signal.SIGINT)
    while alive and time.monotonic() - start < max(graces.values()) + 15:
        time.sleep(0.2)
        alive = [pid for pid in alive if _group_alive(pid)]
        elapsed = time.monotonic() - start
        for pid in alive:
            while escalations[pid] and escalations[pid][0][0] <= elapsed:
                _signal_groups([pid], escalations[pid].pop(0)[1])


def _signal_groups(pids: Sequence[int], sig: signal.Signals) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, sig)


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
    started = {
        s.name: {"pid": s.process.pid, "started": _start_time(s.process.pid), "argv": list(s.argv)}
        for s in services
        if s.process
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(started, indent=2))


def stop_leftovers(path: Path) -> list[str]:
    """Stop what a previous run recorded and left running; returns their names."""
    try:
        recorded = json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        return []
    # The same pid and start time: that process, not a later one that got its pid. (Not the
    # command line: Airflow's components and Celery workers rewrite theirs.)
    left = {
        name: entry["pid"]
        for name, entry in recorded.items()
        if entry.get("started") is not None and _start_time(entry["pid"]) == entry["started"]
    }
    stop_groups(dict.fromkeys(left.values(), 15))
    path.unlink(missing_ok=True)
    return list(left)


def _start_time(pid: int) -> int | None:
    """When the process started (clock ticks since boot, field 22 of /proc/<pid>/stat)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[19])
