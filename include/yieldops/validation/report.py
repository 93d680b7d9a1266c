"""The outcome of validating one file, one readable line per failed expectation."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from great_expectations.core import ExpectationValidationResult
from great_expectations.expectations.row_conditions import deserialize_row_condition

# Expectation arguments a failure line leaves out: where it ran, or too long to read.
_LEFT_OUT = {"batch_id", "column", "column_set", "exact_match"}


@dataclass(frozen=True)
class ValidationReport:
    success: bool
    failures: list[str]  # one line per failed expectation: where, which, observed vs expected
    evaluated: int  # expectations evaluated
    docs_page: Path | None  # this run's Data Docs page, when docs were built


def failure_line(frame: str, outcome: ExpectationValidationResult) -> str:
    """``frame.column (test name): expectation: observed ...; expected ...``."""
    config = outcome.expectation_config
    if config is None:
        raise ValueError(f"{frame}: a validation result without its expectation")
    where = f"{frame}.{config.kwargs['column']}" if "column" in config.kwargs else frame
    if config.notes:
        where += f" ({config.notes})"
    expected = ", ".join(
        f"{key}={_argument(key, value)}"
        for key, value in config.kwargs.items()
        if key not in _LEFT_OUT
    )
    line = f"{where}: {config.type}: observed {_observed(outcome)}"
    return f"{line}; expected {expected}" if expected else line


def _observed(outcome: ExpectationValidationResult) -> str:
    error = _exception_message(outcome.exception_info)
    if error:
        return f"error: {error.removeprefix('Error: ')}"
    result = outcome.result
    if "details" in result and "mismatched" in result["details"]:
        return f"missing columns {sorted(result['details']['mismatched'].get('missing', []))}"
    if "unexpected_count" in result:
        share = result.get("unexpected_percent") or 0.0
        text = f"{result['unexpected_count']} of {result['element_count']} ({share:.3g}%)"
        if result.get("partial_unexpected_index_list"):
            rows = result["partial_unexpected_index_list"][:5]
            return f"{text} unexpected, e.g. {'; '.join(_row(r, result) for r in rows)}"
        sample = [_plain(v) for v in result.get("partial_unexpected_list", []) if pd.notna(v)]
        return f"{text} unexpected, e.g. {sample[:5]}" if sample else f"{text} unexpected"
    return str(_plain(result.get("observed_value")))


def _row(row: dict, result: dict) -> str:
    """A row found: its naming columns, then its values (``1000_RES (RES) high=1 value=5``)."""
    names = result.get("unexpected_index_column_names") or []
    name = " ".join(f"({row[c]})" if i else str(row[c]) for i, c in enumerate(names) if row.get(c))
    values = " ".join(f"{k}={_plain(v)}" for k, v in row.items() if k not in names)
    return f"{name} {values}".strip()


def _exception_message(info: dict) -> str | None:
    """The first exception message; GX nests them by metric when a metric failed."""
    if info.get("raised_exception"):
        return info.get("exception_message")
    nested = (v for v in info.values() if isinstance(v, dict) and v.get("raised_exception"))
    return next((v.get("exception_message") for v in nested), None)


def _argument(key: str, value: object) -> str:
    if key == "row_condition":
        return repr(deserialize_row_condition(value))
    return str(_plain(value))


def _plain(value: object) -> object:
    """A numpy scalar as a Python one, floats rounded to 6 significant digits."""
    value = value.item() if hasattr(value, "item") else value
    if isinstance(value, float) and math.isfinite(value):
        return float(f"{value:.6g}")
    return value
