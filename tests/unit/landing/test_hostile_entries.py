"""Hostile landing entries (links out of the root or to nothing, pipes, sockets, folders and
names that are not UTF-8 posing as STDF files, names too long for the quarantine) are each
rejected once with their reason and never stop the good files beside them."""

from __future__ import annotations

import json
import os
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import TypeVar

import pytest

from yieldops.completeness import HANDED_OVER
from yieldops.ingest import ingest_file
from yieldops.landing.claims import ClaimReport, claim_files, pending_files
from yieldops.landing.ledger import CLAIMED, QUARANTINED, REJECTED, Ledger
from yieldops.landing.zones import (
    LOCAL_QUARANTINE_NAME_MAX,
    PATH_MAX,
    EntryProblem,
    LocalLandingZone,
    RejectedEntry,
    shortened_name,
)
from yieldops.synth import synthesize

T = TypeVar("T")
# Two long names, the same but for their last characters: their shortened quarantine names
# must still differ. 250 bytes fit a file name; with ".reason.json" they would not.
LONG_NAMES = [f"{'lot-A1234-wafer-07-' * 12}{end * 17}.stdf" for end in "xy"]
NOT_UTF8 = b"bad-\xff\xfe-name.stdf"
HOSTILE_REASONS = {
    "outside.stdf": "outside the landing root",
    "dangling.stdf": "dangling symbolic link to nowhere.stdf",
    "dangling-to-bad-name.stdf": "dangling symbolic link to gone-\\xff.stdf",
    "loop-a.stdf": "symbolic link loop",
    "loop-b.stdf": "symbolic link loop",
    "pipe.stdf": "a named pipe (FIFO), not a regular file",
    "socket.stdf": "a socket, not a regular file",
    "folder.stdf": "a directory, not a regular file",
    "bad-\\xff\\xfe-name.stdf": "the name is not valid UTF-8",
}


@pytest.fixture(scope="module")
def lots(tmp_path_factory) -> list[bytes]:
    out = tmp_path_factory.mktemp("lots")
    return [path.read_bytes() for path in synthesize(out, lots=4, wafers_per_lot=1, seed=5)]


@pytest.fixture
def landing(tmp_path, lots) -> Iterator[Path]:
    """Good files (one landed through a symbolic link inside the root, two with long names,
    cut short: bad data to quarantine) beside every kind of hostile entry."""
    root = tmp_path / "landing"
    (root / "tester").mkdir(parents=True)
    (root / "tester" / "lot1.stdf").write_bytes(lots[0])
    (root / "tester" / "lot2.stdf").write_bytes(lots[1])
    (root / ".store").mkdir()  # hidden: not landed itself
    (root / ".store" / "lot3.stdf").write_bytes(lots[2])
    (root / "tester" / "linked.stdf").symlink_to("../.store/lot3.stdf")
    for cut, name in enumerate(LONG_NAMES, start=20_000):  # two cuts: two files
        (root / "tester" / name).write_bytes(lots[3][:cut])
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "secret.stdf").write_bytes(lots[0])
    (root / "outside.stdf").symlink_to(tmp_path / "outside" / "secret.stdf")
    (root / "dangling.stdf").symlink_to("nowhere.stdf")
    (root / "dangling-to-bad-name.stdf").symlink_to(os.fsdecode(b"gone-\xff.stdf"))
    (root / "loop-a.stdf").symlink_to("loop-b.stdf")
    (root / "loop-b.stdf").symlink_to("loop-a.stdf")
    os.mkfifo(root / "pipe.stdf")
    (root / "folder.stdf").mkdir()
    (root / os.fsdecode(NOT_UTF8)).write_bytes(lots[0])
    with _unix_socket(root / "socket.stdf"):
        yield root


@pytest.fixture
def ledger(tmp_path) -> Iterator[Ledger]:
    ledger = Ledger(f"sqlite:///{tmp_path / 'ledger.db'}")
    yield ledger
    ledger.close()


GOOD_KEYS = ["tester/linked.stdf", "tester/lot1.stdf", "tester/lot2.stdf"]


def test_good_files_are_claimed_and_each_hostile_entry_is_rejected_once(landing, ledger):
    zone = LocalLandingZone(landing)

    first = _unless_blocked_on(landing / "pipe.stdf", lambda: claim_files(zone, ledger, "run-1"))

    assert sorted(f.key for f in first.claimed) == sorted(
        GOOD_KEYS + [f"tester/{name}" for name in LONG_NAMES]
    )
    assert _reasons(first.rejected).keys() == HOSTILE_REASONS.keys()
    rejected = {e.source_key: e for e in ledger.entries([REJECTED])}
    assert rejected.keys() == HOSTILE_REASONS.keys()
    for key, reason in HOSTILE_REASONS.items():
        assert reason in rejected[key].reason and rejected[key].dag_run_id == "run-1"
    assert str(landing.parent / "outside" / "secret.stdf") in rejected["outside.stdf"].reason

    # Nothing new: the next claim records nothing, and the sensor waits only for the files
    # still claimed (not for the rejected entries).
    second = claim_files(zone, ledger, "run-2")
    assert second.claimed == second.rejected == []
    assert {e.source_key: e.dag_run_id for e in ledger.entries([REJECTED])} == dict.fromkeys(
        HOSTILE_REASONS, "run-1"
    )
    pending = {e.key for e in pending_files(zone, ledger)}
    assert pending == {f.key for f in first.claimed}
    assert {e.status for e in ledger.entries() if e.source_key in pending} == {CLAIMED}


def test_an_entry_that_becomes_a_file_is_claimed_like_any_other(landing, ledger, lots):
    zone = LocalLandingZone(landing)
    _unless_blocked_on(landing / "pipe.stdf", lambda: claim_files(zone, ledger, "run-1"))
    (landing / "nowhere.stdf").unlink(missing_ok=True)
    (landing / ".store" / "lot4.stdf").write_bytes(lots[3])
    (landing / "dangling.stdf").unlink()
    (landing / "dangling.stdf").symlink_to(".store/lot4.stdf")

    report = _unless_blocked_on(landing / "pipe.stdf", lambda: claim_files(zone, ledger, "run-2"))

    assert [f.key for f in report.claimed] == ["dangling.stdf"]
    assert report.rejected == []


def test_opening_a_pipe_swapped_in_after_the_listing_fails_at_once(landing):
    """The listing never offers a pipe, but one may replace a file before it is read."""
    zone = LocalLandingZone(landing)
    (landing / "tester" / "lot2.stdf").unlink()
    os.mkfifo(landing / "tester" / "lot2.stdf")

    def open_it() -> None:
        with pytest.raises(EntryProblem, match=r"lot2\.stdf: a named pipe"):
            zone.open("tester/lot2.stdf")

    _unless_blocked_on(landing / "tester" / "lot2.stdf", open_it)


def test_a_dry_run_names_the_entries_it_would_reject_and_records_nothing(landing, ledger):
    zone = LocalLandingZone(landing)

    def dry_claim() -> ClaimReport:
        return claim_files(zone, ledger, "r", dry_run=True)

    dry = _unless_blocked_on(landing / "pipe.stdf", dry_claim)

    assert _reasons(dry.rejected).keys() == HOSTILE_REASONS.keys()
    assert ledger.entries() == []


def test_a_long_named_bad_file_is_quarantined_under_a_shortened_name(landing, ledger, tmp_path):
    zone = LocalLandingZone(landing)
    report = _unless_blocked_on(landing / "pipe.stdf", lambda: claim_files(zone, ledger, "run-1"))
    long_ones = [f for f in report.claimed if Path(f.key).name in LONG_NAMES]

    targets = []
    for claimed in long_ones:
        outcome = ingest_file(
            claimed, zone, ledger, "run-1", curated_dir=tmp_path / "curated", rules=HANDED_OVER
        )
        assert outcome.status == QUARANTINED and "ends inside a record" in outcome.reason
        target = Path(outcome.location.removeprefix("file://"))
        assert target.read_bytes() == (landing / claimed.key).read_bytes()
        assert len(target.name.encode()) <= LOCAL_QUARANTINE_NAME_MAX
        assert target.name.endswith(".stdf") and target.parent == tmp_path / "quarantine/tester"
        reason = json.loads(target.with_name(target.name + ".reason.json").read_text())
        assert reason["key"] == claimed.key and reason["stage"] == "incomplete"
        targets.append(target)
    assert len(long_ones) == 2 and targets[0] != targets[1]
    assert {ledger.get(f.sha256).status for f in long_ones} == {QUARANTINED}


def test_shortened_names_fit_keep_their_suffix_and_never_collide():
    start = "é" * 200  # two bytes each: the cut must not split a character
    a = shortened_name(f"{start}a.stdf.gz", 100, f"x/{start}a.stdf.gz")
    b = shortened_name(f"{start}b.stdf.gz", 100, f"x/{start}b.stdf.gz")
    assert a != b and a.endswith(".stdf.gz") and b.endswith(".stdf.gz")
    assert len(a.encode()) <= 100 and len(b.encode()) <= 100 and a.startswith("éé")
    assert shortened_name("short.stdf", 100, "x/short.stdf") == "short.stdf"


def test_a_path_too_long_for_the_quarantine_is_rejected(tmp_path, lots):
    root = tmp_path / "landing"
    # Folders of 200 bytes, then a name, to a path 20 bytes short of PATH_MAX: the file
    # exists, but <quarantine>/<key>.reason.json (a root 3 bytes longer, 12 of suffix) cannot.
    length = PATH_MAX - 20
    folder = root
    while length - len(os.fsencode(folder)) > 240:
        folder /= "f" * 200
    folder.mkdir(parents=True)
    name = "g" * (length - len(os.fsencode(folder)) - len("/.stdf")) + ".stdf"
    (folder / name).write_bytes(lots[0])
    (root / "fine.stdf").write_bytes(lots[1])
    zone = LocalLandingZone(root)

    entries = list(zone.list_entries())

    (rejected,) = [e for e in entries if isinstance(e, RejectedEntry)]
    assert rejected.key == (folder / name).relative_to(root).as_posix()
    assert "too long for the quarantine" in rejected.reason
    assert [f.key for f in zone.list_files()] == ["fine.stdf"]


def test_claim_stops_hashing_new_files_past_its_time_limit(tmp_path, ledger, lots):
    root = tmp_path / "landing"
    root.mkdir()
    for i, data in enumerate(lots):
        (root / f"lot{i}.stdf").write_bytes(data)
    zone = LocalLandingZone(root)

    # No time at all: one file is hashed all the same, so every run makes progress.
    first = claim_files(zone, ledger, "run-1", time_limit=timedelta(0))
    assert [f.key for f in first.claimed] == ["lot0.stdf"]
    assert first.left_for_next_run == ["lot1.stdf", "lot2.stdf", "lot3.stdf"]

    second = claim_files(zone, ledger, "run-2")
    assert [f.key for f in second.claimed] == ["lot1.stdf", "lot2.stdf", "lot3.stdf"]
    assert second.left_for_next_run == []


def test_an_unreadable_file_is_rejected_until_it_changes(tmp_path, ledger, lots):
    root = tmp_path / "landing"
    root.mkdir()
    (root / "good.stdf").write_bytes(lots[0])
    locked = root / "locked.stdf"
    locked.write_bytes(lots[1])
    locked.chmod(0)
    if os.access(locked, os.R_OK):
        pytest.skip("this process reads files whatever their mode (root, CAP_DAC_OVERRIDE)")
    zone = LocalLandingZone(root)

    first = claim_files(zone, ledger, "run-1")
    assert [f.key for f in first.claimed] == ["good.stdf"]
    assert _reasons(first.rejected) == {"locked.stdf": "cannot be read: Permission denied"}
    assert claim_files(zone, ledger, "run-2").rejected == []
    assert [e.key for e in pending_files(zone, ledger)] == ["good.stdf"]

    locked.chmod(0o644)
    modified = locked.stat().st_mtime_ns + 10**9
    os.utime(locked, ns=(modified, modified))  # a new version: tried again
    assert [f.key for f in claim_files(zone, ledger, "run-3").claimed] == ["locked.stdf"]


def _reasons(entries: list[RejectedEntry]) -> dict[str, str]:
    return {e.key: e.reason for e in entries}


def _unless_blocked_on(pipe: Path, call: Callable[[], T]) -> T:
    """Runs ``call``; if it is still blocked on the FIFO ``pipe`` after a long while (opening one
    for reading waits for a writer), opens it for writing once so the test fails instead of
    hanging. Not a timing assertion: a call that never opens the pipe returns at once."""
    result: list[T | BaseException] = []

    def run() -> None:
        try:
            result.append(call())
        except BaseException as exc:  # re-raised in the test's thread
            result.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(timeout=120)
    if thread.is_alive():
        with open(pipe, "wb"):
            pass
        thread.join()
        pytest.fail("blocked on opening a named pipe")
    (outcome,) = result
    if isinstance(outcome, BaseException):
        raise outcome
    return outcome


@contextmanager
def _unix_socket(path: Path) -> Iterator[None]:
    """A Unix socket bound at ``path`` (from its folder: a socket's path must be short)."""
    with socket.socket(socket.AF_UNIX) as sock:
        cwd = os.getcwd()
        os.chdir(path.parent)
        try:
            sock.bind(path.name)
        finally:
            os.chdir(cwd)
        yield


def test_a_file_that_stops_being_a_file_after_its_claim_is_rejected(landing, ledger, tmp_path):
    """Its ingest ends rejected (once, with the reason) instead of failing on every run."""
    zone = LocalLandingZone(landing)
    report = _unless_blocked_on(landing / "pipe.stdf", lambda: claim_files(zone, ledger, "run-1"))
    (claimed,) = [f for f in report.claimed if f.key == "tester/lot2.stdf"]
    (landing / claimed.key).unlink()
    (landing / claimed.key).mkdir()

    outcome = ingest_file(claimed, zone, ledger, "run-1", curated_dir=tmp_path / "curated")

    assert outcome.status == REJECTED and "a directory, not a regular file" in outcome.reason
    assert ledger.get(claimed.sha256).status == REJECTED
