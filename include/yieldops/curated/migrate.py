"""Curated data written before test identity, rewritten to the current schema.

Until test identity (``curated.identity``) a curated file folder named tests by number only:
its ``tests`` table had one row per ``TEST_NUM`` (the first record's name) and ``results``
no ``test_id``. :func:`migrate` rewrites such folders in place, atomically, folder by
folder: each test gets the id of its number and that first name, and each result the id
of its number. A tester that reused numbers for different tests wrote results the old
tables cannot tell apart; :func:`migrate` reports those folders (more results of a
number on a part than pins) so their files can be ingested again from the landing zone
(``reprocess_key`` / ``reprocess_lot``), which separates them.

``yieldops curated migrate`` runs it; reading outdated data raises
:class:`OutdatedCuratedData`, which says to run it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ..atomic import staged_dir
from .identity import TestIds
from .schema import STDF_TABLES


class OutdatedCuratedData(RuntimeError):
    """Curated folders from before test identity; ``yieldops curated migrate`` fixes them."""

    def __init__(self, root: Path, folders: list[str]) -> None:
        self.folders = folders
        super().__init__(
            f"{root}: {len(folders)} curated file folder(s) predate test identity (no test_id), "
            f"e.g. file={folders[0]}; run `yieldops curated migrate --curated {root}`"
        )


@dataclass(frozen=True)
class Migrated:
    folder: Path
    tests: int
    results: int
    reused_numbers: list[int]  # numbers whose results the old tables cannot tell apart


def outdated_folders(root: Path) -> list[Path]:
    """File folders under ``root`` whose results carry no test id."""
    return sorted(
        path.parent
        for path in Path(root).glob("**/results.parquet")
        if "test_id" not in pq.read_schema(path).names
    )


def migrate(root: Path) -> list[Migrated]:
    """Rewrite every outdated file folder under ``root``; returns what each became."""
    return [migrate_folder(folder) for folder in outdated_folders(root)]


def migrate_folder(folder: Path) -> Migrated:
    """One file folder rewritten with test ids (atomically: the old or the new, never half)."""
    tables = {name: pq.read_table(folder / f"{name}.parquet") for name in STDF_TABLES}
    tests, id_of = _tests_with_ids(tables["tests"])
    results = _results_with_ids(tables["results"], id_of)
    lots = tables["lots"]
    if "part_type" not in lots.column_names:
        lots = lots.append_column("part_type", lots["product"])
    updated = {**tables, "tests": tests, "results": results, "lots": lots}
    with staged_dir(folder) as staged:
        for name, schema in STDF_TABLES.items():
            table = updated[name]
            missing = [f for f in schema if f.name not in table.column_names]
            for field in missing:
                table = table.append_column(field, pa.nulls(table.num_rows, field.type))
            pq.write_table(table.select(schema.names).cast(schema), staged / f"{name}.parquet")
    return Migrated(folder, tests.num_rows, results.num_rows, _reused_numbers(results))


def _tests_with_ids(tests: pa.Table) -> tuple[pa.Table, dict[tuple[int, str], str]]:
    ids = TestIds()
    rows = tests.to_pylist()
    id_of = {}
    for row in rows:
        record = row.get("record") or "TSR"
        row["test_id"] = ids(record, row["test_num"], row.get("test_name") or "")
        id_of[(row["test_num"], record)] = row["test_id"]
    return pa.Table.from_pylist(rows, schema=STDF_TABLES["tests"]), id_of


def _results_with_ids(results: pa.Table, id_of: dict[tuple[int, str], str]) -> pa.Table:
    by_number = {num: test_id for (num, _), test_id in sorted(id_of.items(), reverse=True)}
    nums = results["test_num"].to_pylist()
    records = results["record"].cast(pa.string()).to_pylist()
    ids = [id_of.get((n, r)) or by_number.get(n) or str(n) for n, r in zip(nums, records)]
    return results.append_column("test_id", pa.array(ids, pa.string()).dictionary_encode())


def _reused_numbers(results: pa.Table) -> list[int]:
    """Numbers with more results on some part than the test has pins: either loops, or
    several tests under one number (which only re-ingesting the file can tell apart)."""
    keys = results.select(["part_index", "test_num", "pin"])
    counts = keys.group_by(["part_index", "test_num", "pin"]).aggregate([([], "count_all")])
    repeated = counts.filter(pc.greater(counts["count_all"], 1))
    return sorted(set(repeated["test_num"].to_pylist()))
