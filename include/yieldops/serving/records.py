"""Prediction requests: the body of ``POST /v1/predict`` as dies (key + features).

Parsed in the gateway to answer, and again from the same bytes in the mirror worker, so
both name every die alike.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..features import die_key

KEY_FIELDS = ("lot_id", "wafer_id", "x", "y")
NOT_FEATURES = {"die_key", "lot_id", "wafer_id", "features"}


class BadRequest(ValueError):
    pass


@dataclass(frozen=True)
class Die:
    key: str
    features: dict[str, Any]


def parse_records(body: Any) -> list[Die]:
    if isinstance(body, Mapping) and "records" in body:
        body = body["records"]
    records = body if isinstance(body, list) else [body]
    if not records:
        raise BadRequest("no records")
    return [_die(record, i) for i, record in enumerate(records)]


def _die(record: Any, index: int) -> Die:
    if not isinstance(record, Mapping):
        raise BadRequest(f"record {index} is not a JSON object")
    key = record.get("die_key")
    if key is None:
        missing = [f for f in KEY_FIELDS if record.get(f) is None]
        if missing:
            raise BadRequest(f"record {index} has no die_key and lacks {', '.join(missing)}")
        key = die_key(*(record[f] for f in KEY_FIELDS))
    elif not isinstance(key, str) or not key:
        raise BadRequest(f"record {index}: die_key must be a non-empty string")
    features = {k: v for k, v in record.items() if k not in NOT_FEATURES}
    nested = record.get("features") or {}
    if not isinstance(nested, Mapping):
        raise BadRequest(f"record {index}: features must be an object")
    features.update(nested)
    for name, value in features.items():
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
            raise BadRequest(f"record {index}: feature {name!r} is not a number: {value!r}")
    return Die(str(key), features)
