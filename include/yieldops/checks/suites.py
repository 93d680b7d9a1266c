"""Each product's expectation suites on real data when there is some: the newest curated
lot of the product (under the configured curated dataset), each of its files validated as
ingest validated it; else on a small synthetic lot, decoded and validated the way ingest
decodes and validates a landed file. The report line says which."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import pyarrow as pa

from yieldops.config import ConfigError, ProductConfig, load_product

from .config_files import product_files
from .results import FAIL, OK, SKIP, Result, guarded, location

SUITE = "suite"
SHOWN_FAILURES = 3
MAX_CURATED_FILES = 3  # of the newest lot: a lot split over many files is sampled


@dataclass(frozen=True)
class CuratedFile:
    """One source file's folder of curated tables."""

    lot: str
    sha256: str
    folder: Path


def check_suites(config_dir: Path, curated_dir: Path) -> list[Result]:
    with tempfile.TemporaryDirectory(prefix="yieldops-check-") as tmp:
        return [
            result
            for path in product_files(config_dir)
            for result in guarded(SUITE, path, partial(_check_suite, path, curated_dir, Path(tmp)))
        ]


def newest_curated_files(curated_dir: Path, product: str) -> list[CuratedFile]:
    """The curated files of the product's newest lot (MIR start time), newest first, at most
    MAX_CURATED_FILES; none when nothing of the product is curated."""
    from yieldops.curated.dataset import file_dir, read_table

    lots = read_table(curated_dir, "lots", product)
    if not lots.num_rows:  # (an empty table has no partition columns)
        return []
    rows = lots.sort_by([("start_time", "descending")]).to_pylist()  # no start time: last
    newest = [r for r in rows if r["lot"] == rows[0]["lot"]][:MAX_CURATED_FILES]
    return [
        CuratedFile(r["lot"], r["file"], file_dir(curated_dir, product, r["lot"], r["file"]))
        for r in newest
    ]


def curated_tables(folder: Path) -> dict[str, pa.Table]:
    """The curated tables of one source file, as ingest wrote them."""
    import pyarrow.parquet as pq

    from yieldops.curated.schema import STDF_TABLES

    return {name: pq.read_table(folder / f"{name}.parquet") for name in STDF_TABLES}


def _check_suite(path: Path, curated_dir: Path, tmp: Path) -> list[Result]:
    try:
        config = load_product(path)
    except ConfigError:
        return [Result(SKIP, SUITE, location(path), "the product YAML does not load (above)")]
    curated = newest_curated_files(curated_dir, config.name)
    if curated:
        return [
            _verdict(
                path,
                config,
                curated_tables(f.folder),
                f"on curated lot {f.lot!r}, file {f.sha256[:12]}",
            )
            for f in curated
        ]
    return [_on_synthetic_lot(path, config, curated_dir, tmp)]


def _on_synthetic_lot(path: Path, config: ProductConfig, curated_dir: Path, tmp: Path) -> Result:
    # The synthetic fab takes seconds to import: only when checked.
    from yieldops.stdf import read_tables
    from yieldops.synth import PRODUCTS, synthesize

    spec = PRODUCTS.get(config.name)
    if spec is None:
        return Result(
            SKIP,
            SUITE,
            location(path),
            f"{config.name}: nothing curated in {curated_dir} and no synthetic twin in synth",
        )
    (lot,) = synthesize(tmp / config.name, lots=1, wafers_per_lot=1, product=spec)
    return _verdict(path, config, read_tables(lot), "on a synthetic lot")


def _verdict(path: Path, config: ProductConfig, tables: dict[str, pa.Table], on: str) -> Result:
    """OK or FAIL of the product's suites on one file's tables; ``on`` says what they are."""
    # Great Expectations takes seconds to import: only when checked.
    from yieldops.validation import validate_tables

    report = validate_tables(tables, config)
    on = f"{on} ({tables['parts'].num_rows} dies)"
    if report.success:
        return Result(
            OK, SUITE, location(path), f"{config.name}: {report.evaluated} expectations {on}"
        )
    failed = f"{len(report.failures)} of {report.evaluated} expectations failed {on}"
    shown = "; ".join(report.failures[:SHOWN_FAILURES])
    return Result(FAIL, SUITE, location(path), f"{config.name}: {failed}: {shown}")
