"""Shared test fixtures: the real tester files, the pystdf oracle, an Airflow home."""

from __future__ import annotations

import atexit
import gzip
import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from functools import lru_cache
from pathlib import Path

import pytest
from hypothesis import settings

# CI runs the same examples every time (a failure is reproducible); set
# HYPOTHESIS_PROFILE=explore locally to search new ones.
settings.register_profile("ci", derandomize=True, print_blob=True)
settings.register_profile("explore", derandomize=False)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

ROOT = Path(__file__).resolve().parents[1]
POSTGRES_ADMIN_URL = os.environ.get(
    "YIELDOPS_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)


@contextmanager
def throwaway_postgres_database() -> Iterator[str]:
    """The URL of a new database on the test PostgreSQL server, dropped afterwards."""
    import sqlalchemy as sa

    admin = sa.create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    name = f"yieldops_test_{uuid.uuid4().hex[:12]}"
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield admin.url.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE "{name}" WITH (FORCE)'))
        admin.dispose()


def _airflow_metadata_database() -> str | None:
    """YIELDOPS_TEST_METADATA_DB=postgresql: Airflow's metadata in a throwaway PostgreSQL
    database (CI runs the suite on both); otherwise Airflow's SQLite default in its home."""
    if os.environ.get("YIELDOPS_TEST_METADATA_DB", "sqlite") != "postgresql":
        return None
    databases = ExitStack()
    atexit.register(databases.close)
    return databases.enter_context(throwaway_postgres_database())


# Airflow reads its configuration when first imported: point it at a throwaway
# home with this project's dags/ and plugins/ before any test imports it.
AIRFLOW_HOME = Path(tempfile.mkdtemp(prefix="yieldops-test-airflow-"))
atexit.register(shutil.rmtree, AIRFLOW_HOME, ignore_errors=True)
os.environ.update(
    AIRFLOW_HOME=str(AIRFLOW_HOME),
    AIRFLOW__CORE__DAGS_FOLDER=str(ROOT / "dags"),
    AIRFLOW__CORE__PLUGINS_FOLDER=str(ROOT / "plugins"),
    AIRFLOW__CORE__LOAD_EXAMPLES="False",
    AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION="False",
    AIRFLOW__LOGGING__LOGGING_LEVEL="INFO",
)
if METADATA_DB_URL := _airflow_metadata_database():
    # psycopg 3 for the async engine too (Airflow's default would be asyncpg)
    os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = METADATA_DB_URL
    os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_ASYNC"] = METADATA_DB_URL
SAMPLES_DIR = Path(os.environ.get("STDF_SAMPLES_DIR", ROOT.parent / "shared" / "stdf-samples"))
SAMPLE_SUFFIXES = (".stdf", ".stdf.gz", ".stdf.bz2", ".std")


def sample_files() -> list[Path]:
    if not SAMPLES_DIR.is_dir():
        return []
    return sorted(p for p in SAMPLES_DIR.iterdir() if p.name.endswith(SAMPLE_SUFFIXES))


def sample_params():
    files = sample_files()
    if not files:
        return [pytest.param(None, marks=pytest.mark.skip(reason=f"no samples in {SAMPLES_DIR}"))]
    return [pytest.param(p, id=p.name, marks=pytest.mark.samples) for p in files]


class _Collector:
    """A pystdf sink that keeps every record, in file order, as (record type, field values)."""

    def __init__(self) -> None:
        self.stream: list[tuple[str, list]] = []

    def after_send(self, source, data) -> None:
        record_type, fields = data
        self.stream.append((type(record_type).__name__.upper(), list(fields)))

    def __getattr__(self, name):  # before_begin, after_complete, ... are not needed
        if name.startswith(("before_", "after_")):
            return lambda *args: None
        raise AttributeError(name)


@lru_cache(maxsize=8)
def pystdf_stream(path: Path) -> list[tuple[str, list]]:
    """Decode a file with pystdf (the GPL oracle, test-only): its records in file order."""
    from pystdf.IO import Parser

    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rb") as stream:
        parser = Parser(inp=stream)
        collector = _Collector()
        parser.addSink(collector)
        parser.parse()
    return collector.stream


def pystdf_records(path: Path) -> dict[str, list[list]]:
    """pystdf's records of a file by record type."""
    records: dict[str, list[list]] = {}
    for name, fields in pystdf_stream(path):
        records.setdefault(name, []).append(fields)
    return records


@pytest.fixture(scope="session")
def airflow_db():
    """Airflow's metadata database (SQLite in the throwaway home), migrated once."""
    subprocess.run(
        [sys.executable, "-m", "airflow", "db", "migrate"], check=True, capture_output=True
    )
    return AIRFLOW_HOME
