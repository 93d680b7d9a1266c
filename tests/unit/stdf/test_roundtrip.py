"""Writer -> reader round trips, driven by the record specs (property-based)."""

from __future__ import annotations

import io
import math
import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from yieldops.stdf.scan import DecodeFacts, read_records, record_counts
from yieldops.stdf.spec import RECORDS, Field, RecordSpec
from yieldops.stdf.tables import read_tables
from yieldops.stdf.writer import StdfWriter

_INT_RANGES = {
    "U1": (0, 2**8 - 1), "U2": (0, 2**16 - 1), "U4": (0, 2**32 - 1), "U8": (0, 2**63 - 1),
    "I1": (-(2**7), 2**7 - 1), "I2": (-(2**15), 2**15 - 1), "I4": (-(2**31), 2**31 - 1),
    "I8": (-(2**63), 2**63 - 1), "B1": (0, 255), "N1": (0, 15),
}  # fmt: skip
_LATIN1 = st.characters(min_codepoint=1, max_codepoint=255)
# Every type but GDR's Vn, whose items the reader keeps as raw bytes.
ROUND_TRIP_RECORDS = [name for name, spec in RECORDS.items() if name not in ("FAR", "GDR")]


def _scalar(stdf_type: str) -> st.SearchStrategy:
    if stdf_type in _INT_RANGES:
        return st.integers(*_INT_RANGES[stdf_type])
    if stdf_type == "R4":
        return st.floats(width=32, allow_nan=False)
    if stdf_type == "R8":
        return st.floats(allow_nan=False)
    if stdf_type == "Cn":
        return st.text(_LATIN1, max_size=40)
    if stdf_type == "C1":
        return _LATIN1
    if stdf_type == "Bn":
        return st.binary(max_size=12)
    if stdf_type == "Dn":
        return st.integers(0, 90).flatmap(
            lambda bits: st.tuples(
                st.just(bits), st.binary(min_size=(bits + 7) // 8, max_size=(bits + 7) // 8)
            )
        )
    raise AssertionError(stdf_type)


@st.composite
def record_values(draw, spec: RecordSpec) -> tuple[dict, int]:
    """Values for the first ``k`` fields of a record (k at least the required ones)."""
    counts = {f.count_field for f in spec.fields if f.is_array}
    keep = draw(st.integers(max(spec.required, 0), len(spec.fields)))
    values: dict = {}
    for field in spec.fields[:keep]:
        if field.name in counts:
            values[field.name] = draw(st.integers(0, 6))
        elif field.is_array:
            size = values[field.count_field]
            values[field.name] = draw(st.lists(_scalar(field.type), min_size=size, max_size=size))
        else:
            values[field.name] = draw(_scalar(field.type))
    return values, keep


def _expected(spec: RecordSpec, values: dict, keep: int) -> list:
    """What the reader must give back: given fields, then None; a zero-length array
    right at the record's end reads as present and empty, as STDF readers do."""
    out = [values[f.name] for f in spec.fields[:keep]]
    for field in spec.fields[keep:]:
        if field.is_array and values.get(field.count_field) == 0 and None not in out[keep:]:
            out.append([])
        else:
            out.append(None)
    return out


def _same(a, b) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return a == b or (math.isnan(a) and math.isnan(b))
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a == b


def _as_written(field: Field, value):
    """The written value in the reader's representation (R4 loses precision, Dn keeps bytes)."""
    if value is None:
        return None
    if field.type == "R4":
        import numpy as np

        return [float(np.float32(v)) for v in value] if field.is_array else float(np.float32(value))
    if field.type == "Dn":
        return value[1]
    return value


@pytest.mark.parametrize("byte_order", ["<", ">"])
@pytest.mark.parametrize("name", ROUND_TRIP_RECORDS)
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_every_record_type_round_trips(name, byte_order, data):
    spec = RECORDS[name]
    rows = data.draw(st.lists(record_values(spec), min_size=1, max_size=4))
    stream = io.BytesIO()
    writer = StdfWriter(stream, byte_order)
    for values, _ in rows:
        writer.write(name, **values)
    table = read_records(io.BytesIO(stream.getvalue()), [name])[name]
    assert table.num_rows == len(rows)
    for i, field in enumerate(spec.fields):
        got = table.column(field.name).to_pylist()
        for row, (values, keep) in enumerate(rows):
            expected = _as_written(field, _expected(spec, values, keep)[i])
            assert _same(got[row], expected), (
                f"{name}.{field.name} row {row}: {got[row]!r} != {expected!r}"
            )


def test_curated_tables_round_trip_multi_site_parts():
    """Interleaved sites, limits only in the first PTR, a part without PIR."""
    stream = io.BytesIO()
    w = StdfWriter(stream, ">")
    w.write("MIR", SETUP_T=1, START_T=1_700_000_000, STAT_NUM=1, MODE_COD="P", RTST_COD=" ",
            PROT_COD=" ", BURN_TIM=65535, CMOD_COD=" ", LOT_ID="LOT7", PART_TYP="PROD",
            NODE_NAM="n", TSTR_TYP="T")  # fmt: skip
    w.write("WIR", HEAD_NUM=1, SITE_GRP=255, START_T=1_700_000_001, WAFER_ID="W01")
    for site in (0, 1):
        w.write("PIR", HEAD_NUM=1, SITE_NUM=site)
    w.write("PTR", TEST_NUM=100, HEAD_NUM=1, SITE_NUM=1, TEST_FLG=0, PARM_FLG=0, RESULT=2.5,
            TEST_TXT="vdd", ALARM_ID="", OPT_FLAG=0, RES_SCAL=0, LLM_SCAL=0, HLM_SCAL=0,
            LO_LIMIT=1.0, HI_LIMIT=3.0, UNITS="V")  # fmt: skip
    w.write("PTR", TEST_NUM=100, HEAD_NUM=1, SITE_NUM=0, TEST_FLG=0x80, PARM_FLG=0, RESULT=3.5)
    w.write("PRR", HEAD_NUM=1, SITE_NUM=0, PART_FLG=0x08, NUM_TEST=1, HARD_BIN=5, SOFT_BIN=50,
            X_COORD=3, Y_COORD=-2, TEST_T=12, PART_ID="a")  # fmt: skip
    w.write("PRR", HEAD_NUM=1, SITE_NUM=1, PART_FLG=0, NUM_TEST=1, HARD_BIN=1, SOFT_BIN=1,
            X_COORD=4, Y_COORD=-2, TEST_T=11, PART_ID="b")  # fmt: skip
    # No PIR for this part: a tester that skips it still produces a part.
    w.write("PTR", TEST_NUM=100, HEAD_NUM=1, SITE_NUM=0, TEST_FLG=0, PARM_FLG=0, RESULT=1.5)
    w.write("PRR", HEAD_NUM=1, SITE_NUM=0, PART_FLG=0, NUM_TEST=1, HARD_BIN=1, SOFT_BIN=1,
            X_COORD=5, Y_COORD=-2, PART_ID="c")  # fmt: skip
    w.write("WRR", HEAD_NUM=1, SITE_GRP=255, FINISH_T=1_700_000_100, PART_CNT=3, WAFER_ID="W01")
    tables = read_tables(io.BytesIO(stream.getvalue()))

    parts = tables["parts"].to_pylist()
    keys = ("part_id", "site", "x", "hard_bin", "passed", "wafer_id")
    assert [tuple(p[k] for k in keys) for p in parts] == [
        ("a", 0, 3, 5, False, "W01"), ("b", 1, 4, 1, True, "W01"), ("c", 0, 5, 1, True, "W01"),
    ]  # fmt: skip
    by_part = {p["part_id"]: p["part_index"] for p in parts}
    results = tables["results"].to_pylist()
    assert [(r["part_index"], r["result"], r["passed"]) for r in results] == [
        (by_part["b"], 2.5, True), (by_part["a"], 3.5, False), (by_part["c"], 1.5, True),
    ]  # fmt: skip
    (test,) = tables["tests"].to_pylist()
    assert (test["test_name"], test["units"], test["lo_limit"], test["hi_limit"]) == (
        "vdd",
        "V",
        1.0,
        3.0,
    )
    (lot,) = tables["lots"].to_pylist()
    assert (lot["lot_id"], lot["product"], lot["byte_order"], lot["finish_time"]) == (
        "LOT7",
        "PROD",
        "big",
        None,
    )
    (wafer,) = tables["wafers"].to_pylist()
    assert (wafer["wafer_id"], wafer["part_count"]) == ("W01", 3)


def test_latin1_text_is_decoded():
    stream = io.BytesIO()
    w = StdfWriter(stream)
    w.write("MIR", LOT_ID="Lötß°", PART_TYP="µ-chip")
    (lot,) = read_tables(io.BytesIO(stream.getvalue()))["lots"].to_pylist()
    assert (lot["lot_id"], lot["product"]) == ("Lötß°", "µ-chip")


def test_tests_named_only_by_tsr_get_a_row():
    stream = io.BytesIO()
    w = StdfWriter(stream)
    w.write("TSR", HEAD_NUM=1, SITE_NUM=0, TEST_TYP="P", TEST_NUM=7, EXEC_CNT=3, FAIL_CNT=1,
            ALRM_CNT=0, TEST_NAM="idd")  # fmt: skip
    w.write("TSR", HEAD_NUM=1, SITE_NUM=1, TEST_TYP="P", TEST_NUM=7, EXEC_CNT=2, FAIL_CNT=0,
            ALRM_CNT=0, TEST_NAM="idd")  # fmt: skip
    (test,) = read_tables(io.BytesIO(stream.getvalue()))["tests"].to_pylist()
    assert (test["test_num"], test["record"], test["test_name"]) == (7, "PTR", "idd")
    assert (test["exec_count"], test["fail_count"]) == (5, 1)


def test_a_test_is_its_number_and_name():
    """A number reused for other tests (Advantest SmarTest writes 0 for dozens), records
    without a name (the test their number first named), the same number and name on two
    record types, and TSRs naming tests by number and name."""
    stream = io.BytesIO()
    w = StdfWriter(stream)

    def ptr(num: int, result: float, name: str | None = None) -> None:
        named = {} if name is None else {"TEST_TXT": name}
        w.write("PTR", TEST_NUM=num, HEAD_NUM=1, SITE_NUM=0, TEST_FLG=0, PARM_FLG=0,
                RESULT=result, **named)  # fmt: skip

    w.write("PIR", HEAD_NUM=1, SITE_NUM=0)
    ptr(0, 1.0, "Vopp@OUT1N[1]")
    ptr(0, 2.0, "Vopp@OUT1P[1]")
    ptr(0, 3.0)  # no name: Vopp@OUT1N[1], the name its number was first given
    ptr(7, 4.0, "")  # an empty name on a number's first record: the test "7"
    ptr(7, 5.0)
    w.write("FTR", TEST_NUM=0, HEAD_NUM=1, SITE_NUM=0, TEST_FLG=0, TEST_TXT="Vopp@OUT1N[1]")
    w.write("PRR", HEAD_NUM=1, SITE_NUM=0, PART_FLG=0, NUM_TEST=6, HARD_BIN=1, SOFT_BIN=1)
    for name, count in (("Vopp@OUT1P[1]", 1), ("Vopp@OUT1N[1]", 2)):
        w.write("TSR", HEAD_NUM=255, SITE_NUM=0, TEST_TYP="P", TEST_NUM=0, EXEC_CNT=count,
                FAIL_CNT=0, ALRM_CNT=0, TEST_NAM=name)  # fmt: skip
    tables = read_tables(io.BytesIO(stream.getvalue()))

    results = tables["results"].to_pylist()
    n1, p1 = "0_Vopp_OUT1N_1", "0_Vopp_OUT1P_1"
    assert [(r["test_id"], r["result"]) for r in results if r["record"] == "PTR"] == [
        (n1, 1.0), (p1, 2.0), (n1, 3.0), ("7", 4.0), ("7", 5.0),
    ]  # fmt: skip
    (ftr,) = [r["test_id"] for r in results if r["record"] == "FTR"]
    assert ftr.startswith(f"{n1}_") and len(ftr) == len(n1) + 7  # told apart by a digest
    tests = {t["test_id"]: t for t in tables["tests"].to_pylist()}
    assert sorted(tests) == sorted([n1, p1, "7", ftr])
    assert (tests[n1]["test_name"], tests[n1]["exec_count"]) == ("Vopp@OUT1N[1]", 2)
    assert (tests[p1]["test_name"], tests[p1]["exec_count"]) == ("Vopp@OUT1P[1]", 1)


def test_v4_2007_and_reserved_records_are_counted_skipped_and_warned_of():
    stream = io.BytesIO()
    w = StdfWriter(stream)
    w.write("MIR", LOT_ID="L", PART_TYP="P")
    w.write("PIR", HEAD_NUM=1, SITE_NUM=0)
    # PSR, STR (V4-2007), MTR (memory extension), two of the REC_TYP V4 reserves for Image
    for typ, sub in ((1, 90), (15, 30), (15, 40), (180, 7), (180, 200), (181, 0)):
        stream.write(struct.pack("<HBB", 5, typ, sub) + b"\x01\x02\x03\x04\x05")
    w.write("PRR", HEAD_NUM=1, SITE_NUM=0, PART_FLG=0, NUM_TEST=0, HARD_BIN=1, SOFT_BIN=1)
    data = stream.getvalue()
    facts = DecodeFacts()
    assert read_tables(io.BytesIO(data), facts=facts)["parts"].num_rows == 1
    counts = record_counts(io.BytesIO(data))
    assert {name: counts[name] for name in ("PSR", "STR", "MTR", "IMAGE", "IG900", "PRR")} == {
        "PSR": 1, "STR": 1, "MTR": 1, "IMAGE": 2, "IG900": 1, "PRR": 1,
    }  # fmt: skip
    assert facts.warnings == [
        "skipped 1 PSR record(s) (an STDF V4-2007 record): not decoded",
        "skipped 1 STR record(s) (an STDF V4-2007 record): not decoded",
        "skipped 1 MTR record(s) (an STDF Memory Fail Datalog record): not decoded",
        "skipped 2 IMAGE record(s) (REC_TYP 180, reserved for Image software): not decoded",
        "skipped 1 IG900 record(s) (REC_TYP 181, reserved for IG900 software): not decoded",
    ]


def test_decode_facts_say_how_the_file_ends():
    stream = io.BytesIO()
    w = StdfWriter(stream)
    w.write("MIR", LOT_ID="L", PART_TYP="P")
    w.write("PIR", HEAD_NUM=1, SITE_NUM=0)
    w.write("PRR", HEAD_NUM=1, SITE_NUM=0, PART_FLG=0, NUM_TEST=0, HARD_BIN=1, SOFT_BIN=1)
    unfinished = DecodeFacts()
    read_tables(io.BytesIO(stream.getvalue()), facts=unfinished)
    w.write("MRR", FINISH_T=1_700_000_100)
    finished = DecodeFacts()
    read_tables(io.BytesIO(stream.getvalue()), facts=finished)

    assert (unfinished.last_record, unfinished.ends_with_mrr) == ("PRR", False)
    assert (finished.last_record, finished.ends_with_mrr) == ("MRR", True)
    assert finished.records == {"FAR": 1, "MIR": 1, "PIR": 1, "PRR": 1, "MRR": 1}
