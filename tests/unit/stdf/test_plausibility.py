"""A record the reader cannot trust is an error, never a silently shorter file: a REC_LEN
longer than its type's fields allow, a record type STDF does not define, a part without
its PRR (counted)."""

from __future__ import annotations

import io
import struct
from functools import cache

import pytest

from yieldops.stdf import DecodeFacts, RecordLengthError, StdfError, UndefinedRecordError
from yieldops.stdf.scan import read_records
from yieldops.stdf.source import MAX_RECORD
from yieldops.stdf.spec import MAX_BODY, RECORDS
from yieldops.stdf.tables import read_tables
from yieldops.stdf.writer import StdfWriter
from yieldops.synth import DEFAULT_PRODUCT, generate_lot, lot_to_bytes

PTR = (15, 10)


@cache
def wafer() -> bytes:
    """A synthetic wafer file as a tester writes it (1,185 dies)."""
    return lot_to_bytes(generate_lot(DEFAULT_PRODUCT, lot_index=0, seed=0, wafers=1))


def headers(data: bytes) -> list[tuple[int, int, int, int]]:
    """(offset, REC_TYP, REC_SUB, REC_LEN) of every record of a little-endian file."""
    found, p = [], 0
    while p + 4 <= len(data):
        (length,) = struct.unpack("<H", data[p : p + 2])
        found.append((p, data[p + 2], data[p + 3], length))
        p += 4 + length
    return found


def with_length(data: bytes, offset: int, length: int) -> bytes:
    return data[:offset] + struct.pack("<H", length) + data[offset + 2 :]


def test_the_most_a_record_holds_follows_its_fields():
    maxima = {name: spec.max_length for name, spec in RECORDS.items()}
    assert (maxima["PTR"], maxima["PIR"], maxima["PRR"], maxima["EPS"]) == (1568, 2, 785, 0)
    assert maxima["SDR"] == 3 + 255 + 16 * 256  # SITE_CNT (a U1) site numbers, 16 strings
    # arrays counted by a U2, and GDR's generic data, can fill any body REC_LEN can give
    assert {n for n, m in maxima.items() if m == MAX_BODY} == {
        "PGR",
        "PLR",
        "RDR",
        "MPR",
        "FTR",
        "GDR",
    }


def _fullest(spec) -> dict:
    """Every field of a record at its largest: 255-byte strings, 255-element U1-counted arrays."""
    values: dict = {}
    for f in spec.fields:
        if f.is_array:
            values[f.name] = [0] * values[f.count_field]
        elif f.type in ("Cn", "Bn"):
            values[f.name] = "x" * 255 if f.type == "Cn" else b"\xff" * 255
        else:
            values[f.name] = 255 if f.type in ("U1", "U2", "U4", "B1") else 0
    return values


@pytest.mark.parametrize("name", [n for n, s in RECORDS.items() if s.max_length < MAX_BODY])
def test_a_record_at_its_most_is_read(name):
    """The maximum is no tighter than the spec: a record with every field at its largest
    has exactly that length and decodes."""
    stream = io.BytesIO()
    w = StdfWriter(stream)
    if name != "FAR":
        w.write(name, **_fullest(RECORDS[name]))
    data = stream.getvalue()
    most = RECORDS[name].max_length
    assert struct.unpack("<H", data[len(data) - 4 - most :][:2]) == (most,)
    assert len(read_records(io.BytesIO(data), [name])[name]) == 1


def test_a_ptr_of_65535_bytes_in_a_wafer_is_an_error_not_fewer_dies():
    """The issue's case: one PTR's REC_LEN changed from its real value to 65535 made the
    reader skip 82 dies of a wafer and finish without a word."""
    data = wafer()
    assert read_tables(io.BytesIO(data))["parts"].num_rows == 1185
    ptrs = [h for h in headers(data) if h[1:3] == PTR]
    offset, _, _, real = ptrs[194]  # without the check: 847 of the 1,185 dies, no error
    assert real < 100
    with pytest.raises(RecordLengthError) as caught:
        read_tables(io.BytesIO(with_length(data, offset, 0xFFFF)))
    error = caught.value
    assert (error.offset, error.record) == (offset, "PTR")
    assert "PTR of 65535 bytes: a PTR holds at most 1568" in str(error)
    assert "implausible REC_LEN" in str(error)


def test_an_implausible_length_near_the_end_is_named_not_a_cut_file():
    """A REC_LEN that runs past the end of the file is the bad length, not a truncation."""
    data = wafer()
    offset = [h for h in headers(data) if h[1:3] == PTR][-1][0]
    with pytest.raises(RecordLengthError, match="PTR of 65535 bytes") as caught:
        read_tables(io.BytesIO(with_length(data, offset, 0xFFFF)))
    assert caught.value.offset == offset


@pytest.mark.parametrize("extra", [1, 2, 3, 4, 5, 7, 9, 11, 13])
def test_a_rec_len_a_little_too_long_ends_in_an_error(extra):
    """The reader lands inside the next record: what it then reads as headers is a type STDF
    does not define or a length its type cannot have, long before the file ends."""
    data = wafer()
    ptrs = [h for h in headers(data) if h[1:3] == PTR]
    for offset, _, _, length in ptrs[:: len(ptrs) // 40]:
        with pytest.raises(StdfError):
            read_tables(io.BytesIO(with_length(data, offset, length + extra)))


def _small_file() -> tuple[bytes, int]:
    """A file of one part with a PTR, and the offset of that PTR."""
    stream = io.BytesIO()
    w = StdfWriter(stream)
    w.write("MIR", LOT_ID="L", PART_TYP="P")
    w.write("PIR", HEAD_NUM=1, SITE_NUM=0)
    ptr = stream.tell()
    w.write("PTR", TEST_NUM=1, HEAD_NUM=1, SITE_NUM=0, TEST_FLG=0, PARM_FLG=0, RESULT=1.0)
    w.write("PRR", HEAD_NUM=1, SITE_NUM=0, PART_FLG=0, NUM_TEST=1, HARD_BIN=1, SOFT_BIN=1)
    w.write("MRR", FINISH_T=1)
    return stream.getvalue(), ptr


def test_an_undefined_record_names_its_offset_and_the_record_before():
    data, ptr = _small_file()
    after_ptr = ptr + 4 + 12
    undefined = struct.pack("<HBB", 3, 7, 99) + b"abc"
    path = "wafer.stdf"
    stream = io.BytesIO(data[:after_ptr] + undefined + data[after_ptr:])
    stream.name = path
    with pytest.raises(UndefinedRecordError) as caught:
        read_tables(stream)
    message = str(caught.value)
    assert caught.value.offset == after_ptr and message.startswith(f"{path} (byte {after_ptr})")
    assert "undefined record type (REC_TYP 7, REC_SUB 99)" in message
    assert f"the previous record, PTR at byte {ptr} (REC_LEN 12)" in message


def test_the_record_before_may_be_in_the_chunk_before():
    data = wafer()
    chunk = 1 << 16  # the smallest chunk: the buffer holds it and one largest record
    first_of_second = next(h for h in headers(data) if h[0] + 4 + h[3] > chunk + MAX_RECORD)
    offset = first_of_second[0]
    last_of_first = next(h for h in reversed(headers(data)) if h[0] < offset)
    bad = data[: offset + 2] + bytes([7, 99]) + data[offset + 4 :]
    with pytest.raises(UndefinedRecordError) as caught:
        read_tables(io.BytesIO(bad), chunk_size=chunk)
    assert caught.value.offset == offset
    assert f"at byte {last_of_first[0]} (REC_LEN {last_of_first[3]})" in str(caught.value)


def test_an_undefined_record_at_the_end_is_named_not_a_cut_file():
    data, _ = _small_file()
    with pytest.raises(UndefinedRecordError, match="REC_TYP 7, REC_SUB 99") as caught:
        read_tables(io.BytesIO(data + struct.pack("<HBB", 500, 7, 99) + b"abc"))
    assert caught.value.offset == len(data) and "MRR at byte" in str(caught.value)


def test_parts_without_a_prr_are_counted():
    stream = io.BytesIO()
    w = StdfWriter(stream)
    w.write("MIR", LOT_ID="L", PART_TYP="P")
    for closed in (False, True, False):  # the second PIR finds the first part still open
        w.write("PIR", HEAD_NUM=1, SITE_NUM=0)
        w.write("PTR", TEST_NUM=1, HEAD_NUM=1, SITE_NUM=0, TEST_FLG=0, PARM_FLG=0, RESULT=1.0)
        if closed:
            w.write("PRR", HEAD_NUM=1, SITE_NUM=0, PART_FLG=0, NUM_TEST=1, HARD_BIN=1)
    facts = DecodeFacts()
    tables = read_tables(io.BytesIO(stream.getvalue()), facts=facts)
    assert (tables["parts"].num_rows, tables["results"].num_rows) == (1, 3)
    assert facts.warnings == [
        "2 part(s) opened by a PIR got no PRR: no part row, their results are kept without one"
    ]


def test_a_whole_wafer_has_no_warnings():
    facts = DecodeFacts()
    read_tables(io.BytesIO(wafer()), facts=facts)
    assert facts.warnings == []
