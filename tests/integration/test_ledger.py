"""The ledger on SQLite and on the real PostgreSQL server: exactly-once claims."""

from __future__ import annotations

import random
from concurrent.futures import ProcessPoolExecutor
from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa
from tests.conftest import POSTGRES_ADMIN_URL, throwaway_postgres_database

from yieldops.landing.ledger import (
    CLAIMED,
    CURATED,
    FAILED,
    QUARANTINED,
    SUPERSEDED,
    WAITING,
    Ledger,
)


@pytest.fixture(scope="module")
def postgres_url():
    """A throwaway database on the local PostgreSQL server, dropped afterwards."""
    try:
        with throwaway_postgres_database() as url:
            yield url
    except sa.exc.OperationalError as exc:
        pytest.skip(f"PostgreSQL not reachable at {POSTGRES_ADMIN_URL}: {exc}")


@pytest.fixture(params=["sqlite", "postgresql"])
def ledger_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'ledger.db'}"
    base = request.getfixturevalue("postgres_url")
    ledger = Ledger(base)  # each test starts from empty tables
    with ledger.engine.begin() as conn:
        conn.execute(
            sa.text(
                "TRUNCATE yieldops_landed_files, yieldops_landed_sources, yieldops_landed_waits"
            )
        )
    ledger.close()
    return base


def _claim(ledger: Ledger, sha: str, run: str, **kwargs) -> bool:
    return ledger.claim(
        sha, source_key=f"{sha}.stdf", zone_url="file:///z", size=1, run_id=run, **kwargs
    )


def test_a_file_is_claimed_once_and_finished_by_its_run(ledger_url):
    ledger = Ledger(ledger_url)
    assert _claim(ledger, "a" * 64, "run1")
    assert not _claim(ledger, "a" * 64, "run2")  # held by run1
    assert not ledger.finish("a" * 64, "run2", CURATED)  # run2 does not hold it
    assert ledger.finish("a" * 64, "run1", CURATED, output="/c/a", product="P", lot_id="L1")
    assert not _claim(ledger, "a" * 64, "run3")  # done: same bytes are never curated twice
    entry = ledger.get("a" * 64)
    assert (entry.status, entry.attempts, entry.output, entry.lot_id) == (CURATED, 1, "/c/a", "L1")
    ledger.close()


def test_failed_stale_and_reprocessed_files_can_be_claimed_again(ledger_url):
    ledger = Ledger(ledger_url)
    assert _claim(ledger, "f" * 64, "run1")
    ledger.finish("f" * 64, "run1", FAILED, reason="worker lost")
    assert _claim(ledger, "f" * 64, "run2")
    assert ledger.get("f" * 64).attempts == 2 and ledger.get("f" * 64).reason is None

    assert _claim(ledger, "s" * 64, "run1")
    assert not _claim(ledger, "s" * 64, "run2")
    assert _claim(ledger, "s" * 64, "run2", stale_after=timedelta(0))  # the claimer died

    assert _claim(ledger, "q" * 64, "run1")
    ledger.finish("q" * 64, "run1", QUARANTINED, reason="truncated")
    assert not _claim(ledger, "q" * 64, "run2")
    assert _claim(ledger, "q" * 64, "run2", reprocess=True)
    ledger.close()


def test_a_waiting_file_keeps_its_times_is_taken_again_and_is_superseded(ledger_url):
    ledger = Ledger(ledger_url)
    modified = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=timezone.utc)
    assert _claim(ledger, "w" * 64, "run1")
    assert not ledger.wait(
        "w" * 64, "run2", reason="no MRR", recheck_at=modified, modified_at=modified
    )  # run2 does not hold it
    assert ledger.wait(
        "w" * 64, "run1", reason="no MRR", recheck_at=modified + timedelta(hours=1),
        modified_at=modified,
    )  # fmt: skip
    (waiting,) = ledger.waiting("file:///z").values()
    assert waiting.recheck_at == modified + timedelta(hours=1) and waiting.modified_at == modified
    assert waiting.due(modified + timedelta(hours=1), modified)
    assert not waiting.due(modified, modified) and waiting.due(modified, modified - timedelta(1))
    assert ledger.get("w" * 64).status == WAITING and ledger.waiting("s3://other") == {}

    assert _claim(ledger, "w" * 64, "run2")  # looked at again (claim_files says when)
    assert ledger.wait("w" * 64, "run2", reason="still", recheck_at=modified, modified_at=modified)
    assert ledger.waiting("file:///z")["w" * 64].recheck_at == modified  # one row, updated
    ledger.supersede({"w" * 64: "newer bytes"})
    assert ledger.waiting("file:///z") == {}
    assert (ledger.get("w" * 64).status, ledger.get("w" * 64).reason) == (SUPERSEDED, "newer bytes")
    assert _claim(ledger, "w" * 64, "run3")  # the same bytes landed again
    ledger.close()


def test_release_unfinished_marks_a_runs_leftovers_failed(ledger_url):
    ledger = Ledger(ledger_url)
    for sha in ("1" * 64, "2" * 64):
        _claim(ledger, sha, "run1")
    ledger.finish("1" * 64, "run1", CURATED)
    assert ledger.release_unfinished("run1", "task failed") == ["2" * 64]
    assert [e.status for e in ledger.entries()] == [CURATED, FAILED]
    ledger.close()


def test_sources_remember_versions_and_duplicates(ledger_url):
    ledger = Ledger(ledger_url)
    ledger.record_source("file:///z", "a.stdf", "v1", "a" * 64)
    ledger.record_source("file:///z", "a.stdf", "v1", "a" * 64)  # idempotent
    ledger.record_source("file:///z", "copy-of-a.stdf", "v1", "a" * 64)
    assert ledger.source_hashes("file:///z") == {
        ("a.stdf", "v1"): "a" * 64,
        ("copy-of-a.stdf", "v1"): "a" * 64,
    }
    assert ledger.source_hashes("s3://other") == {}
    assert ledger.sha256_of(key="copy-of-a.stdf") == ["a" * 64]
    ledger.close()


def _claim_all(url: str, run: str, shas: list[str], seed: int) -> list[str]:
    ledger = Ledger(url)
    order = shas[:]
    random.Random(seed).shuffle(order)
    taken = [sha for sha in order if _claim(ledger, sha, run)]
    ledger.close()
    return taken


def test_two_concurrent_claimers_never_take_the_same_file(ledger_url):
    Ledger(ledger_url).close()  # create the tables before the race
    shas = [f"{i:064x}" for i in range(300)]
    with ProcessPoolExecutor(2) as pool:
        first, second = pool.map(
            _claim_all, [ledger_url] * 2, ["runA", "runB"], [shas, shas], [1, 2]
        )
    assert not set(first) & set(second)
    assert sorted(first + second) == shas
    ledger = Ledger(ledger_url)
    holders = {e.sha256: e.dag_run_id for e in ledger.entries([CLAIMED])}
    assert holders == {**dict.fromkeys(first, "runA"), **dict.fromkeys(second, "runB")}
    ledger.close()
