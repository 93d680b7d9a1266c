"""Validate one decoded STDF file: each frame against its suite, in an in-memory GX context."""

from __future__ import annotations

import datetime
import re
from collections.abc import Mapping
from pathlib import Path

import great_expectations as gx
import pandas as pd
import pyarrow as pa
from great_expectations.core import ExpectationSuiteValidationResult
from great_expectations.data_context import AbstractDataContext
from great_expectations.datasource.fluent import PandasDatasource

from yieldops.config import ProductConfig

from .context import ephemeral_context
from .docs import publish
from .frames import validation_frames
from .report import ValidationReport, failure_line
from .suites import INDEX_COLUMNS, expectation_suites

DATASOURCE = "stdf"


def validate_tables(
    tables: Mapping[str, pa.Table],
    product: ProductConfig,
    *,
    docs_dir: Path | str | None = None,
    run_name: str = "",
    stdf_file: str = "",
) -> ValidationReport:
    """Validate the curated tables of one STDF file against the product's suites.

    ``run_name`` names the run in Data Docs (default: the file's lot id). With
    ``docs_dir``, the run is added to the Data Docs site there and
    ``docs_page`` is the run's page; every page names ``stdf_file`` (the file's
    landing key or name) and the lot.
    """
    frames = validation_frames(tables, product)
    suites = expectation_suites(product)
    lots = _lot_ids(tables["lots"])
    run_id = gx.RunIdentifier(
        run_name=_safe_name(run_name or lots),
        run_time=datetime.datetime.now(datetime.timezone.utc),
    )
    context = _context()
    results = {
        name: _validate(context, name, suites[name], frame, run_id)
        for name, frame in frames.items()
    }
    page = None
    if docs_dir is not None:
        subject = f"{stdf_file} (lot {lots})" if stdf_file else f"lot {lots}"
        page = publish(context.validation_results_store, Path(docs_dir), run_id, subject)
    return ValidationReport(
        success=all(result.success for result in results.values()),
        failures=[
            failure_line(name, outcome)
            for name, result in results.items()
            for outcome in result.results
            if not outcome.success
        ],
        evaluated=sum(r.statistics["evaluated_expectations"] for r in results.values()),
        docs_page=page,
    )


def _context() -> AbstractDataContext:
    context = ephemeral_context()
    context.data_sources.add_pandas(DATASOURCE)
    return context


def _validate(
    context: AbstractDataContext,
    name: str,
    suite: gx.ExpectationSuite,
    frame: pd.DataFrame,
    run_id: gx.RunIdentifier,
) -> ExpectationSuiteValidationResult:
    datasource = context.data_sources.get(DATASOURCE)
    if not isinstance(datasource, PandasDatasource):
        raise TypeError(f"data source {DATASOURCE!r} is a {type(datasource).__name__}, not pandas")
    asset = datasource.add_dataframe_asset(name)
    definition = gx.ValidationDefinition(
        name=name,
        data=asset.add_batch_definition_whole_dataframe("file"),
        suite=context.suites.add(suite),
    )
    return context.validation_definitions.add(definition).run(
        batch_parameters={"dataframe": frame}, result_format=_result_format(name), run_id=run_id
    )


def _result_format(frame: str) -> dict:
    """BASIC: what reports and Data Docs show (counts, share and a sample of the unexpected
    values), with fewer metrics per expectation than SUMMARY's per-value counts and row
    indexes. COMPLETE where a row stands for a measurement: Data Docs name the rows found
    (by ``INDEX_COLUMNS``) from its full list, as long as the file's list of tests."""
    if frame in INDEX_COLUMNS:
        return {"result_format": "COMPLETE", "unexpected_index_column_names": INDEX_COLUMNS[frame]}
    return {"result_format": "BASIC"}


def _lot_ids(lots: pa.Table) -> str:
    ids = lots.column("lot_id").to_pylist() if "lot_id" in lots.column_names else []
    return "+".join(str(i) for i in ids if i) or "unknown"


def _safe_name(name: str) -> str:
    """A run name usable as one path component of the Data Docs site."""
    return re.sub(r"[^A-Za-z0-9._+-]+", "_", name).strip(".") or "run"
