"""Prediction requests: a request body as dies (key + features), every record checked.

Parsed in the gateway to answer, and again from the same bytes in the mirror worker, so
both name every die alike. Two shapes of body:

- the gateway's own: one record, a list of records, or ``{"records": [...]}``. A record
  names its die by ``die_key``, or by ``lot_id``, ``wafer_id``, ``x`` and ``y`` (one of the
  two is required), and carries its features at top level or under ``features``.
- MLflow's scoring forms (what ``mlflow models serve`` clients send), told apart by their
  key: ``{"dataframe_split": {"columns": [...], "data": [[...]...]}}``,
  ``{"dataframe_records": [{...}...]}``, ``{"inputs": ...}`` or ``{"instances": ...}`` (a
  list of records, or an object of equal-length columns). Other keys (``params``) are
  ignored, as MLflow ignores them. Each row is a record as above, but a row without a whole
  die key is named by a generated one, ``row:`` and 16 hex digits of the SHA-256 of the
  row's JSON: the same row gets the same key in the gateway and the mirror worker (and the
  same canary role every time it is sent). A top-level feature of a single record cannot be
  called ``inputs``, ``instances`` or ``dataframe_*``: put it under ``features``.

Checks, each failure a :class:`BadRequest` naming the record (its index) and the field and
never echoing a value back:

- features are finite numbers, or null (missing: the model imputes it). NaN, Infinity and
  -Infinity (which Python's json accepts) and numbers past the float range (``1e400`` reads
  as infinity) are refused;
- ``die_key`` is a string; ``lot_id`` and ``wafer_id`` strings or integers; ``x`` and ``y``
  integers; the key is at most ``MAX_KEY_CHARS`` characters of text without NUL or lone
  surrogates (it is a column of the prediction log);
- more records than the caller allows is :class:`TooLarge`, told before any record is
  looked at; JSON nested past the interpreter's recursion limit is a BadRequest.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..features import die_key

KEY_FIELDS = ("lot_id", "wafer_id", "x", "y")
NOT_FEATURES = {"die_key", "lot_id", "wafer_id", "features"}
MLFLOW_FORMS = ("dataframe_split", "dataframe_records", "inputs", "instances")
MAX_KEY_CHARS = 256  # the prediction log's die_key column
_SHOWN_CHARS = 40  # of a feature name in a message
_JSON_TYPES = {str: "a string", list: "an array", dict: "an object", bool: "a boolean"}


class BadRequest(ValueError):
    """A request the gateway refuses (422); the message is short and echoes no value."""

    status = 422


class TooLarge(BadRequest):
    """A request over a size limit (413); the message names the limit."""

    status = 413


@dataclass(frozen=True)
class Die:
    key: str
    features: dict[str, Any]


def parse_body(body: bytes, max_records: int | None = None) -> list[Die]:
    """The dies of a request body (JSON bytes); at most ``max_records`` of them."""
    try:
        data = json.loads(body)
    except RecursionError:
        raise BadRequest("the JSON is nested too deeply") from None
    except ValueError as exc:  # not JSON, not UTF-8, an integer of more than 4300 digits
        raise BadRequest(f"the body is not valid JSON: {str(exc)[:200]}") from None
    return parse_records(data, max_records)


def parse_records(body: Any, max_records: int | None = None) -> list[Die]:
    """The dies of a parsed JSON body (either shape); at most ``max_records`` of them."""
    form = mlflow_form(body)
    if form is None:
        if isinstance(body, Mapping) and "records" in body:
            body = body["records"]
        records = body if isinstance(body, list) else [body]
        _check_count(len(records), max_records)
        return [_die(record, i, generated_key=False) for i, record in enumerate(records)]
    rows = _mlflow_rows(form, body[form], max_records)
    return [_die(row, i, generated_key=True) for i, row in enumerate(rows)]


def mlflow_form(body: Any) -> str | None:
    """Which MLflow scoring form ``body`` is, None when it is not one."""
    if not isinstance(body, Mapping):
        return None
    forms = [form for form in MLFLOW_FORMS if form in body]
    if len(forms) > 1:
        raise BadRequest(f"give exactly one of {', '.join(MLFLOW_FORMS)}")
    return forms[0] if forms else None


def _check_count(count: int, max_records: int | None) -> None:
    if count == 0:
        raise BadRequest("no records")
    if max_records is not None and count > max_records:
        raise TooLarge(f"{count} records; at most {max_records} per request")


def _mlflow_rows(form: str, value: Any, max_records: int | None) -> Sequence[Any]:
    """The rows of an MLflow scoring form, each a record (checked later, one by one)."""
    if form == "dataframe_split":
        return _split_rows(value, max_records)
    if isinstance(value, list):
        _check_count(len(value), max_records)
        return value
    if form != "dataframe_records" and isinstance(value, Mapping):
        return _column_rows(form, value, max_records)
    raise BadRequest(f"{form} must be a list of records")


def _split_rows(split: Any, max_records: int | None) -> list[Any]:
    if not isinstance(split, Mapping):
        raise BadRequest("dataframe_split must be an object with columns and data")
    columns, data = split.get("columns"), split.get("data")
    if not isinstance(columns, list) or not all(isinstance(c, str) for c in columns):
        raise BadRequest("dataframe_split.columns must be a list of column names")
    if not isinstance(data, list):
        raise BadRequest("dataframe_split.data must be a list of rows")
    _check_count(len(data), max_records)
    rows = []
    for i, row in enumerate(data):
        if not isinstance(row, list) or len(row) != len(columns):
            raise BadRequest(f"record {i}: a row must be a list of {len(columns)} values")
        rows.append(dict(zip(columns, row)))
    return rows


def _column_rows(form: str, columns: Mapping[str, Any], max_records: int | None) -> list[Any]:
    """``{"column": [value per row]...}`` as one record per row."""
    lengths = {len(v) if isinstance(v, list) else -1 for v in columns.values()}
    if len(lengths) != 1 or -1 in lengths:
        raise BadRequest(f"{form} as columns must map each name to a list, all of one length")
    _check_count(lengths.pop(), max_records)
    names = list(columns)
    return [dict(zip(names, values)) for values in zip(*columns.values())]


def _die(record: Any, index: int, generated_key: bool) -> Die:
    """The die of one record; ``generated_key``: a record without a whole key gets one."""
    if not isinstance(record, Mapping):
        raise BadRequest(f"record {index} is not a JSON object")
    features = {k: v for k, v in record.items() if k not in NOT_FEATURES}
    nested = record.get("features") or {}
    if not isinstance(nested, Mapping):
        raise BadRequest(f"record {index}: features must be an object")
    features.update(nested)
    for name, value in features.items():
        _check_feature(index, name, value)
    # After the features: what is left of the record is scalars, so its JSON is shallow.
    return Die(_key(record, index, generated_key), features)


def _check_feature(index: int, name: str, value: Any) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int | float):
        kind = _JSON_TYPES.get(type(value), type(value).__name__)
        raise BadRequest(f"record {index}: feature {_shown(name)} is {kind}, not a number")
    if not _finite(value):
        raise BadRequest(
            f"record {index}: feature {_shown(name)} is not a finite number "
            "(NaN, Infinity or out of range); send null for a missing value"
        )


def _key(record: Mapping[str, Any], index: int, generated_key: bool) -> str:
    given = record.get("die_key")
    if given is not None:
        if not isinstance(given, str) or not given:
            raise BadRequest(f"record {index}: die_key must be a non-empty string")
        return _checked_key(given, index, "die_key")
    parts = [record.get(field) for field in KEY_FIELDS]
    for field, value in zip(KEY_FIELDS, parts):
        _check_key_part(index, field, value)
    missing = [field for field, value in zip(KEY_FIELDS, parts) if value is None]
    if not missing:
        return _checked_key(die_key(*parts), index, "the die key (lot_id:wafer_id:x:y)")
    if generated_key:
        canonical = json.dumps(record, sort_keys=True, separators=(",", ":"))
        return "row:" + hashlib.sha256(canonical.encode()).hexdigest()[:16]
    raise BadRequest(f"record {index} has no die_key and lacks {', '.join(missing)}")


def _check_key_part(index: int, field: str, value: Any) -> None:
    if value is None:
        return
    if field in ("x", "y"):
        if not _integer(value):
            raise BadRequest(f"record {index}: {field} must be an integer")
    elif isinstance(value, bool) or not isinstance(value, str | int):
        raise BadRequest(f"record {index}: {field} must be a string or an integer")
    elif isinstance(value, str) and (problem := _text_problem(value)):
        raise BadRequest(f"record {index}: {field} {problem}")


def _checked_key(key: str, index: int, what: str) -> str:
    if len(key) > MAX_KEY_CHARS:
        raise BadRequest(f"record {index}: {what} is over {MAX_KEY_CHARS} characters")
    if problem := _text_problem(key):
        raise BadRequest(f"record {index}: {what} {problem}")
    return key


def _text_problem(text: str) -> str | None:
    """Why ``text`` cannot be a die key, if it cannot."""
    if "\x00" in text:
        return "holds a NUL character"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "is not valid text (a lone surrogate)"
    return None


def _integer(value: Any) -> bool:
    """An integer, or a float of an integer's value (as a frame with NaN elsewhere sends)."""
    if isinstance(value, bool):
        return False
    return isinstance(value, int) or (isinstance(value, float) and value.is_integer())


def _finite(value: int | float) -> bool:
    try:
        return math.isfinite(value)
    except OverflowError:  # an integer past the float range
        return False


def _shown(name: str) -> str:
    """A feature name as a message shows it: ASCII, quoted, cut short."""
    if len(name) > _SHOWN_CHARS:
        return ascii(name[:_SHOWN_CHARS]) + "..."
    return ascii(name)
