"""The reader against pystdf on real tester files: every field of every
PTR, MPR, FTR and PRR, and the curated tables built from them."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest
from tests.conftest import pystdf_records, pystdf_stream, sample_params

from yieldops.curated.identity import make_test_id
from yieldops.stdf.scan import read_records
from yieldops.stdf.spec import RECORDS
from yieldops.stdf.tables import read_tables

COMPARED = ("PTR", "MPR", "FTR", "PRR")


def _as_oracle(value, stdf_type: str, is_array: bool):
    """Our decoded value in pystdf's representation."""
    if value is None:
        return None
    if is_array and stdf_type == "N1":  # pystdf keeps nibble arrays packed, two per byte
        padded = [*value, 0] if len(value) % 2 else value
        return [padded[i] | (padded[i + 1] << 4) for i in range(0, len(padded), 2)]
    if stdf_type in ("Bn", "Dn"):
        return list(value)
    return value


def _same(ours, theirs) -> bool:
    if isinstance(theirs, float):
        return ours == theirs or (math.isnan(theirs) and math.isnan(ours))
    if isinstance(theirs, list) and theirs and isinstance(theirs[0], float):
        return len(ours) == len(theirs) and all(_same(a, b) for a, b in zip(ours, theirs))
    return ours == theirs


@pytest.mark.parametrize("path", sample_params())
def test_every_field_matches_pystdf(path):
    oracle = pystdf_records(path)
    ours = read_records(path, list(COMPARED))
    for name in COMPARED:
        expected = oracle.get(name, [])
        table = ours.get(name)
        assert (table.num_rows if table is not None else 0) == len(expected), name
        if not expected:
            continue
        for i, field in enumerate(RECORDS[name].fields):
            column = table.column(field.name).to_pylist()
            theirs = [row[i] for row in expected]
            mismatches = [
                (row, a, b)
                for row, (a, b) in enumerate(zip(column, theirs))
                if not _same(_as_oracle(a, field.type, field.is_array), b)
            ]
            assert not mismatches, f"{path.name} {name}.{field.name}: {mismatches[:3]}"


def _parts_by_pystdf(oracle_stream: list[tuple[str, list]]) -> list[int]:
    """Part number of each PTR, by a plain PIR/PRR walk over pystdf's records."""
    open_part: dict[tuple[int, int], int] = {}
    next_part = 0
    ptr_parts = []
    for name, fields in oracle_stream:
        if name in ("PIR", "PTR", "PRR"):
            key = (fields[0], fields[1]) if name != "PTR" else (fields[1], fields[2])
            if name == "PIR" or key not in open_part:
                open_part[key] = next_part
                next_part += 1
            if name == "PTR":
                ptr_parts.append(open_part[key])
            if name == "PRR":
                del open_part[key]
    return ptr_parts


@pytest.mark.parametrize("path", sample_params())
def test_curated_tables_match_pystdf(path):
    oracle = pystdf_records(path)
    tables = read_tables(path)
    parts, results, tests = tables["parts"], tables["results"], tables["tests"]

    prr = oracle.get("PRR", [])
    assert parts.num_rows == len(prr)
    assert parts.column("hard_bin").to_pylist() == [r[4] for r in prr]
    assert parts.column("part_id").to_pylist() == [r[9] for r in prr]
    assert parts.column("passed").to_pylist() == [
        None if r[2] & 0x10 else not r[2] & 0x08 for r in prr
    ]

    by_record = Counter(results.column("record").to_pylist())
    mpr_values = sum(r[6] or 0 for r in oracle.get("MPR", []))
    assert by_record["PTR"] == len(oracle.get("PTR", []))
    assert by_record["FTR"] == len(oracle.get("FTR", []))
    assert by_record["MPR"] == mpr_values

    ptr_rows = results.filter(np.array(results.column("record").to_pylist()) == "PTR")
    expected_results = [r[5] for r in oracle.get("PTR", [])]
    assert all(_same(a, b) for a, b in zip(ptr_rows.column("result").to_pylist(), expected_results))
    assert ptr_rows.column("part_index").to_pylist() == _parts_by_pystdf(pystdf_stream(path))

    # MPR pins: the record's RTN_INDX, else the first RTN_INDX of its test.
    expected_pins, first_pins = [], {}
    for r in oracle.get("MPR", []):
        count, own = r[6] or 0, r[19]
        first_pins.setdefault(r[0], own)
        source = own if own and len(own) == count else first_pins[r[0]]
        expected_pins += source if source and len(source) == count else [None] * count
    mpr_rows = results.filter(np.array(results.column("record").to_pylist()) == "MPR")
    assert mpr_rows.column("pin").to_pylist() == expected_pins

    # A test is its record type, number and name; a record without a name is the test its
    # number first named. One tests row per distinct test; every result names its test.
    for name, name_at in (("PTR", 6), ("MPR", 9), ("FTR", 22)):
        expected_ids, first_name = [], {}
        for r in oracle.get(name, []):
            first_name.setdefault(r[0], r[name_at] or "")
            test_id = make_test_id(name, r[0], r[name_at] or first_name[r[0]])
            expected_ids += [test_id] * ((r[6] or 0) if name == "MPR" else 1)
        rows = results.filter(np.array(results.column("record").to_pylist()) == name)
        assert rows.column("test_id").to_pylist() == expected_ids, f"{path.name} {name}"
    test_ids = tests.column("test_id").to_pylist()
    assert len(test_ids) == len(set(test_ids))
    assert set(results.column("test_id").to_pylist()) <= set(test_ids)

    mir = oracle.get("MIR", [[None] * 10])[0]
    lots = tables["lots"].to_pylist()[0]
    assert (lots["lot_id"], lots["product"], lots["tester_type"]) == (mir[8], mir[9], mir[11])
