"""Each product's expectation suites on a small synthetic lot, decoded and validated the way
ingest decodes and validates a landed file."""

from __future__ import annotations

import tempfile
from functools import partial
from pathlib import Path

from yieldops.config import ConfigError, load_product

from .config_files import product_files
from .results import FAIL, OK, SKIP, Result, guarded, location

SUITE = "suite"
SHOWN_FAILURES = 3


def check_suites(config_dir: Path) -> list[Result]:
    with tempfile.TemporaryDirectory(prefix="yieldops-check-") as tmp:
        return [
            result
            for path in product_files(config_dir)
            for result in guarded(SUITE, path, partial(_check_suite, path, Path(tmp)))
        ]


def _check_suite(path: Path, tmp: Path) -> list[Result]:
    # Great Expectations and the synthetic fab take seconds to import: only when checked.
    from yieldops.stdf import read_tables
    from yieldops.synth import PRODUCTS, synthesize
    from yieldops.validation import validate_tables

    try:
        config = load_product(path)
    except ConfigError:
        return [Result(SKIP, SUITE, location(path), "the product YAML does not load (above)")]
    spec = PRODUCTS.get(config.name)
    if spec is None:
        return [Result(SKIP, SUITE, location(path), f"{config.name}: no synthetic twin in synth")]
    (lot,) = synthesize(tmp / config.name, lots=1, wafers_per_lot=1, product=spec)
    tables = read_tables(lot)
    report = validate_tables(tables, config)
    on = f"on a synthetic lot of {tables['parts'].num_rows} dies"
    if report.success:
        return [
            Result(
                OK, SUITE, location(path), f"{config.name}: {report.evaluated} expectations {on}"
            )
        ]
    failed = f"{len(report.failures)} of {report.evaluated} expectations failed {on}"
    shown = "; ".join(report.failures[:SHOWN_FAILURES])
    return [Result(FAIL, SUITE, location(path), f"{config.name}: {failed}: {shown}")]
