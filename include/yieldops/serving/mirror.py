"""Mirrored copies, scored by worker processes beside the gateway's.

Why processes: a copy scored in a thread of the gateway holds the GIL that the callers'
requests need (``benchmarks/bench_gateway.py`` measured +2.3 ms p95 at 50 requests/s).
So the gateway hands a request's copy over as cheaply as it can, and only once the answer
is sent: the raw request body and, per mirroring version, the positions of its dies,
pickled by the event loop itself into a pipe (no feeder thread to wake, no GIL handed
back and forth). A worker parses the body again, loads the versions it needs itself (kept
while the routing names them), scores the copies of a window (``log_flush_seconds``) in
one model call per version, as the gateway scores the requests waiting together, writes
the unserved rows to the prediction log itself and reports back only counts and timings,
which the event loop turns into metrics.

Handing over never blocks: past ``mirror_max_pending`` dies handed over and not yet
reported, a copy is dropped and its dies are counted (``yieldops_gateway_shadow_dropped_total``,
by reason), and the gateway logs a warning when it starts dropping and when it mirrors
again. The bound counts dies, not requests: what the workers hold and owe grows with the
dies, and a bound in requests dropped copies of small requests under a load the workers
kept up with (a worker reports once per write, so its backlog peaks at a window's requests).
A copy whose version the worker cannot load is dropped and counted as well: no row claims
that version scored dies it never saw. Every dropped copy is also a row of the prediction
log's ``yieldops_dropped_copies`` (version, dies, reason), so a rollout step's window says
how many of its copies it never got.
"""

from __future__ import annotations

import asyncio
import json
import logging
import multiprocessing
import os
import pickle
import signal
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any

from .metrics import Metrics
from .models import LoadedModel, Loader, OpenMPThreads, score
from .predlog import PredictionLog, PredictionTable, dropped_copies, dropped_row, prediction_rows
from .records import Die, parse_records
from .settings import GatewaySettings

log = logging.getLogger(__name__)
# Stopping, workers get this long to score the copies they hold: enough for one still
# spawning and loading its models, within the 30 s an orchestrator grants before SIGKILL.
STOP_SECONDS = 25.0
# A version a worker failed to load is tried again after this; its copies are dropped
# meanwhile, so a broken registry is not asked once per request.
LOAD_RETRY_SECONDS = 30.0


# -- what goes through the pipes -----------------------------------------------------------


@dataclass(frozen=True)
class Mirror:
    """The dies at ``indices`` of a request, to be scored by ``role``'s ``version``."""

    role: str
    version: int
    indices: tuple[int, ...]


@dataclass(frozen=True)
class Copy:
    request_id: str
    body: bytes  # the request body as received: cheaper to pass on than the parsed dies
    mirrors: tuple[Mirror, ...]
    keep: frozenset[int]  # the versions the routing names; a worker may unload the rest

    @property
    def dies(self) -> int:
        return sum(len(m.indices) for m in self.mirrors)


@dataclass(frozen=True)
class Report:
    """What a worker finished since its last report."""

    dies: int  # of the copies taken from the pipe: scored or dropped, no longer waiting
    calls: tuple[tuple[int, str, int, int, float], ...]  # version, role, dies, errors, seconds
    dropped: int  # dies of versions that did not load
    lost_rows: int  # prediction log rows the worker could not write


_LENGTH = struct.Struct("!I")


def frame(message: Any) -> bytes:
    """``message`` pickled, after its length."""
    payload = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    return _LENGTH.pack(len(payload)) + payload


def take_message(buffer: bytearray) -> Any | None:
    """The first whole message in ``buffer`` (removed from it), or None."""
    if len(buffer) < _LENGTH.size:
        return None
    (size,) = _LENGTH.unpack_from(buffer)
    end = _LENGTH.size + size
    if len(buffer) < end:
        return None
    # Unpickling is safe here: the bytes come from our own pipe, never from a caller.
    message = pickle.loads(buffer[_LENGTH.size : end])  # nosec B301
    del buffer[:end]
    return message


def read_message(fd: int) -> Any:
    """The next message from a blocking pipe; EOFError once its writers closed it."""
    (size,) = _LENGTH.unpack(_read_exactly(fd, _LENGTH.size))
    # Unpickling is safe here: our own pipe, as in take_message.
    return pickle.loads(_read_exactly(fd, size))  # nosec B301


def _read_exactly(fd: int, size: int) -> bytes:
    data = bytearray()
    while len(data) < size:
        chunk = os.read(fd, size - len(data))
        if not chunk:
            raise EOFError
        data += chunk
    return bytes(data)


# -- the gateway's side --------------------------------------------------------------------


class MirrorPool:
    """The worker processes (spawned on first use) and the pipes to and from them, driven
    by the event loop."""

    def __init__(self, settings: GatewaySettings, loader: Loader, metrics: Metrics) -> None:
        self._settings = settings
        self._loader = loader
        self._metrics = metrics
        self._copies: asyncio.WriteTransport | None = None
        self._reports_closed: asyncio.Future | None = None
        self._workers: list[BaseProcess] = []
        self._locks: tuple[Any, ...] = ()
        self._drop_log: PredictionLog | None = None  # where dropped copies are recorded
        self.backlog = 0  # dies handed over whose copies are not reported yet
        self._dropping = 0  # dies dropped since copies were last handed over
        metrics.track_shadow_backlog(lambda: self.backlog)

    async def start(self) -> None:
        """Spawn the workers unless they run; raises when the loader does not pickle."""
        if self._copies is not None:
            return
        if self._drop_log is None:
            self._drop_log = await asyncio.to_thread(
                PredictionLog,
                self._settings.log_url,
                on_lost=lambda rows: self._metrics.prediction_log_lost("gateway", rows),
            )
        context = multiprocessing.get_context("spawn")
        copies_out, copies_in = context.Pipe(duplex=False)
        reports_out, reports_in = context.Pipe(duplex=False)
        # The parent keeps the locks while the workers run: a lock freed here is gone for them.
        self._locks = (context.Lock(), context.Lock())
        ends = (copies_out, self._locks[0], reports_in, self._locks[1])
        try:
            self._workers = await asyncio.to_thread(self._spawn, context, ends)
        except BaseException:
            for end in (copies_in, reports_out):
                end.close()
            raise
        finally:  # the workers hold their own ends: EOF reaches each side once the other goes
            copies_out.close()
            reports_in.close()
        loop = asyncio.get_running_loop()
        self._reports_closed = loop.create_future()
        reader = ReportReader(self._take_report, self._reports_closed)
        await loop.connect_read_pipe(lambda: reader, reports_out)
        self._copies, _ = await loop.connect_write_pipe(asyncio.Protocol, copies_in)
        for worker in self._workers:
            loop.add_reader(worker.sentinel, self._worker_exited, worker)

    def _spawn(self, context: Any, ends: tuple) -> list[BaseProcess]:
        workers: list[BaseProcess] = []
        try:
            for number in range(self._settings.mirror_processes):
                worker = context.Process(
                    target=run_worker,
                    args=(self._settings, self._loader, *ends),
                    name=f"yieldops-mirror-{number}",
                    daemon=True,  # ended with the gateway, however it ends
                )
                worker.start()
                workers.append(worker)
        except BaseException:
            _end(workers)
            raise
        return workers

    async def submit(self, copy: Copy) -> None:
        """Hand ``copy`` to the workers, or drop it and count its dies when no worker takes
        copies or too many dies wait. Never blocks: a full pipe keeps the rest in the event
        loop's buffer."""
        pipe = self._copies
        if pipe is None or pipe.is_closing():
            self._drop(copy, "no_workers")
        elif self.backlog >= self._settings.mirror_max_pending:
            self._drop(copy, "backlog")
        else:
            if self._dropping:
                log.warning("mirroring again: the copies of %d dies were dropped", self._dropping)
                self._dropping = 0
            self.backlog += copy.dies
            pipe.write(frame(copy))

    def _drop(self, copy: Copy, reason: str) -> None:
        """Count the copy's dies and record them in the log; the first drop of a run of them
        is logged."""
        self._metrics.shadow_dropped(reason, copy.dies)
        if self._drop_log is not None:
            self._drop_log.add(
                [dropped_row(m.version, m.role, len(m.indices), reason) for m in copy.mirrors],
                dropped_copies,
            )
        if not self._dropping:
            log.warning(
                "dropping mirrored copies (%s): %d dies' copies wait for the workers, "
                "at most %d (mirror_max_pending); counted in shadow_dropped_total",
                reason,
                self.backlog,
                self._settings.mirror_max_pending,
            )
        self._dropping += copy.dies

    async def stop(self) -> None:
        """Let the workers finish the queued copies, then end them (by handle); close the
        record of dropped copies."""
        try:
            await self._stop_workers()
        finally:
            if self._drop_log is not None:
                await asyncio.to_thread(self._drop_log.close)
                self._drop_log = None

    async def _stop_workers(self) -> None:
        if self._copies is None:
            return
        if self._reports_closed is None:  # start() sets it before the copies pipe
            raise RuntimeError("the mirror pool has a copies pipe but no report reader")
        loop = asyncio.get_running_loop()
        for worker in self._workers:
            loop.remove_reader(worker.sentinel)
        self._copies.close()  # once written out, the workers read EOF and stop
        await asyncio.to_thread(_end, self._workers, STOP_SECONDS)
        try:  # their last reports
            await asyncio.wait_for(self._reports_closed, STOP_SECONDS)
        except TimeoutError:
            log.warning("the mirror workers' reports did not end")
        self._copies = self._reports_closed = None
        self._workers, self._locks = [], ()
        self.backlog = 0  # whatever a terminated worker held is lost

    def _take_report(self, report: Report) -> None:
        for version, role, dies, errors, seconds in report.calls:
            self._metrics.observe(version, role, "shadow", dies, errors, seconds)
        if report.dropped:
            self._metrics.shadow_dropped("not_loaded", report.dropped)
        if report.lost_rows:
            self._metrics.prediction_log_lost("mirror", report.lost_rows)
        self.backlog -= report.dies

    def _worker_exited(self, worker: BaseProcess) -> None:
        """Not while stopping: ``stop`` stops watching first."""
        asyncio.get_running_loop().remove_reader(worker.sentinel)
        log.error("mirror worker %s exited: the copies it held are lost", worker.pid)


class ReportReader(asyncio.Protocol):
    """The workers' reports, as the event loop receives them."""

    def __init__(self, take: Callable[[Report], None], closed: asyncio.Future) -> None:
        self._take = take
        self._closed = closed
        self._buffer = bytearray()

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        while (report := take_message(self._buffer)) is not None:
            self._take(report)

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed.set_result(None)


def _end(workers: list[BaseProcess], seconds: float = 0.0) -> None:
    """Wait up to ``seconds`` for each worker to exit, then terminate it."""
    for worker in workers:
        worker.join(seconds)
        if worker.is_alive():
            log.warning("terminating mirror worker %s", worker.pid)
            worker.terminate()
            worker.join()


# -- the worker process --------------------------------------------------------------------


def run_worker(
    settings: GatewaySettings,
    loader: Loader,
    copies: Connection,
    copies_lock: Any,
    reports: Connection,
    reports_lock: Any,
) -> None:
    """A worker process: score copies until the gateway closes the pipe."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the group: the gateway stops us
    if settings.mirror_niceness:
        os.nice(settings.mirror_niceness)
    worker = MirrorWorker(settings, loader)
    inbox = CopyReader(copies, copies_lock)
    try:
        while worker.run_window(inbox, lambda r: _send(reports, reports_lock, r)):
            pass
    finally:
        worker.table.close()


def _send(reports: Connection, lock: Any, report: Report) -> None:
    data = memoryview(frame(report))
    with lock:  # one whole message at a time: the workers share the pipe
        while data:
            data = data[os.write(reports.fileno(), data) :]


class CopyReader:
    """The copies the gateway writes, shared by the workers (one reads at a time)."""

    def __init__(self, copies: Connection, lock: Any) -> None:
        self._copies = copies
        self._lock = lock

    def next(self, deadline: float | None = None) -> Copy | None:
        """The next copy; None when none came by ``deadline`` (``time.monotonic()``);
        EOFError once the gateway closed the pipe."""
        wait = None if deadline is None else max(0.0, deadline - time.monotonic())
        if not self._lock.acquire(True, wait):
            return None
        try:
            if deadline is not None and not self._copies.poll(
                max(0.0, deadline - time.monotonic())
            ):
                return None
            return read_message(self._copies.fileno())
        finally:
            self._lock.release()


@dataclass
class Window:
    """Copies scored since the last write, their rows and model calls."""

    copies: int = 0
    dies: int = 0
    rows: list[dict[str, Any]] = field(default_factory=list)
    dropped: list[dict[str, Any]] = field(default_factory=list)  # rows of dropped_copies
    calls: list[tuple[int, str, int, int, float]] = field(default_factory=list)

    def report(self, lost_rows: int) -> Report:
        dropped = sum(row["dies"] for row in self.dropped)
        return Report(self.dies, tuple(self.calls), dropped, lost_rows)


class MirrorWorker:
    def __init__(self, settings: GatewaySettings, loader: Loader) -> None:
        self.models = WorkerModels(loader, settings.model_threads)
        self.table = PredictionTable(settings.log_url)
        self.threads = OpenMPThreads(settings.model_threads)
        self.batch_rows = settings.log_batch_rows
        self.flush_seconds = settings.log_flush_seconds

    def run_window(self, inbox: CopyReader, report: Callable[[Report], None]) -> bool:
        """Take copies from the first for ``flush_seconds`` (or ``batch_rows`` dies), score
        them in one model call per version, write their rows in one insert, then report
        them; False once the gateway closed the pipe."""
        window, waiting = Window(), []
        try:
            copy = inbox.next()
            ends = time.monotonic() + self.flush_seconds
            while copy is not None:
                waiting += self._read_copy(copy, window)
                if window.dies >= self.batch_rows:
                    break
                copy = inbox.next(ends)
            more = True
        except EOFError:
            more = False
        for (version, role), group in _by_version(waiting).items():
            self._score_group(version, role, group, window)
        # Written before the report: the gateway counts the copies as done.
        lost = self.table.write(window.rows) + self.table.write(window.dropped, dropped_copies)
        if window.copies:
            report(window.report(lost))
        return more

    def _read_copy(self, copy: Copy, window: Window) -> list[Waiting]:
        """The copy's dies, per version that mirrors them."""
        window.copies += 1
        window.dies += copy.dies
        try:
            dies = parse_records(json.loads(copy.body))
            self.models.keep(copy.keep)
            return [
                Waiting(copy.request_id, mirror, [dies[i] for i in mirror.indices])
                for mirror in copy.mirrors
            ]
        except Exception:  # a bug here must not stop the worker
            log.exception("could not read the copy of request %s", copy.request_id)
            return []

    def _score_group(self, version: int, role: str, group: list[Waiting], window: Window) -> None:
        """The window's copies for one version in one model call (as the gateway scores
        the requests waiting together); a failed call is retried copy by copy."""
        model = self.models.get(version)
        if model is None:
            dies = sum(len(w.dies) for w in group)
            window.dropped.append(dropped_row(version, role, dies, "not_loaded"))
            return
        self.threads.apply()
        scored = score(model, [d.features for w in group for d in w.dies])
        if scored.error is not None and len(group) > 1:
            for waiting in group:
                self._score_group(version, role, [waiting], window)
            return
        errors = sum(len(w.dies) for w in group) if scored.error else 0
        window.calls.append(
            (version, role, sum(len(w.dies) for w in group), errors, scored.seconds)
        )
        for waiting, part in zip(group, scored.split([len(w.dies) for w in group])):
            keys = [d.key for d in waiting.dies]
            window.rows += prediction_rows(waiting.request_id, version, role, False, keys, part)


@dataclass(frozen=True)
class Waiting:
    """One copy's dies for one mirroring version, waiting for the window's model call."""

    request_id: str
    mirror: Mirror
    dies: list[Die]


def _by_version(waiting: list[Waiting]) -> dict[tuple[int, str], list[Waiting]]:
    groups: dict[tuple[int, str], list[Waiting]] = {}
    for w in waiting:
        groups.setdefault((w.mirror.version, w.mirror.role), []).append(w)
    return groups


class WorkerModels:
    """The versions a worker has loaded, loaded on first use."""

    def __init__(self, loader: Loader, threads: int | None) -> None:
        self.loader = loader
        self.threads = threads
        self.loaded: dict[int, LoadedModel] = {}
        self.failed_at: dict[int, float] = {}

    def keep(self, versions: frozenset[int]) -> None:
        """Unload the versions the routing no longer names."""
        for version in self.loaded.keys() - versions:
            del self.loaded[version]

    def get(self, version: int) -> LoadedModel | None:
        """The version, loading it if need be; None when it does not load (logged)."""
        if version in self.loaded:
            return self.loaded[version]
        failed = self.failed_at.get(version)
        if failed is not None and time.monotonic() - failed < LOAD_RETRY_SECONDS:
            return None
        try:
            model = LoadedModel.load(self.loader, version, self.threads)
        except Exception:
            log.exception("the mirror worker could not load version %s", version)
            self.failed_at[version] = time.monotonic()
            return None
        self.failed_at.pop(version, None)
        self.loaded[version] = model
        return model
