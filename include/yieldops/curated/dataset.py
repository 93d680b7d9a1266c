"""The curated Parquet dataset: one folder per source file, partitioned by product and lot.

    <root>/product=<product>/lot=<lot>/file=<sha256>/<table>.parquet

A source file's output is keyed by its content hash and written atomically,
so a retry or a re-run replaces it instead of appending rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from urllib.parse import quote

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from ..atomic import staged_dir
from .migrate import OutdatedCuratedData
from .schema import STDF_TABLES

PARTITION_SCHEMA = pa.schema(
    [("product", pa.string()), ("lot", pa.string()), ("file", pa.string())]
)
PARTITIONING = ds.partitioning(PARTITION_SCHEMA, flavor="hive")


def file_dir(root: Path, product: str, lot_id: str, sha256: str) -> Path:
    # Partition values are URI-encoded, as pyarrow's hive partitioning expects.
    return (
        root
        / f"product={quote(product, safe='')}"
        / f"lot={quote(lot_id, safe='')}"
        / f"file={sha256}"
    )


def write_file_tables(
    tables: dict[str, pa.Table],
    root: Path,
    product: str,
    lot_id: str,
    sha256: str,
    replaces: Sequence[Path] = (),
) -> Path:
    """Write one source file's curated tables; returns their folder. ``replaces``: the
    folders of earlier versions of the same landed file, removed as this one appears."""
    dest = file_dir(root, product, lot_id, sha256)
    with staged_dir(dest, replaces) as staged:
        for name, schema in STDF_TABLES.items():
            pq.write_table(tables[name].cast(schema), staged / f"{name}.parquet")
    return dest


def read_table(root: Path, table: str, product: str | None = None) -> pa.Table:
    """One curated table across files, with ``product``, ``lot`` and ``file`` columns.
    Raises OutdatedCuratedData when a file folder predates test identity."""
    base = root / (f"product={quote(product, safe='')}" if product else "")
    paths = sorted(
        path
        for path in base.glob(f"**/{table}.parquet")
        # Hidden folders are writes in progress or versions being replaced (atomic.staged_dir).
        if not any(part.startswith(".") for part in path.relative_to(root).parts)
    )
    if not paths:
        return STDF_TABLES[table].empty_table()
    dataset = ds.dataset(
        [str(p) for p in paths],
        format="parquet",
        partitioning=PARTITIONING,
        partition_base_dir=str(root),
        schema=pa.unify_schemas([STDF_TABLES[table], PARTITION_SCHEMA]),
    )
    read = dataset.to_table()
    if "test_id" in read.column_names and read["test_id"].null_count:
        outdated = read.filter(pc.is_null(read["test_id"]))
        raise OutdatedCuratedData(root, sorted(set(outdated["file"].to_pylist())))
    return read
