"""Bad input gets a StdfError naming the file, offset and record, and nothing else."""

from __future__ import annotations

import bz2
import contextlib
import gzip
import io
import struct

import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from yieldops.stdf.errors import (
    CompressionError,
    NotStdfError,
    RecordLengthError,
    StdfError,
    TruncatedError,
    UnsupportedVersionError,
)
from yieldops.stdf.scan import read_records
from yieldops.stdf.tables import read_tables, to_parquet
from yieldops.stdf.writer import StdfWriter


def _small_file(byte_order: str = "<") -> bytes:
    stream = io.BytesIO()
    w = StdfWriter(stream, byte_order)
    w.write("MIR", SETUP_T=1, START_T=2, LOT_ID="L", PART_TYP="P")
    w.write("WIR", HEAD_NUM=1, SITE_GRP=255, START_T=3, WAFER_ID="W")
    for part in range(4):
        w.write("PIR", HEAD_NUM=1, SITE_NUM=part % 2)
        w.write("PTR", TEST_NUM=1, HEAD_NUM=1, SITE_NUM=part % 2, TEST_FLG=0, PARM_FLG=0,
                RESULT=0.5 * part, TEST_TXT="t", ALARM_ID="", OPT_FLAG=0)  # fmt: skip
        w.write("MPR", TEST_NUM=2, HEAD_NUM=1, SITE_NUM=part % 2, TEST_FLG=0, PARM_FLG=0,
                RTN_ICNT=2, RSLT_CNT=2, RTN_STAT=[1, 2], RTN_RSLT=[1.0, 2.0])  # fmt: skip
        w.write("FTR", TEST_NUM=3, HEAD_NUM=1, SITE_NUM=part % 2, TEST_FLG=0x80)
        w.write("PRR", HEAD_NUM=1, SITE_NUM=part % 2, PART_FLG=0, NUM_TEST=3, HARD_BIN=1,
                SOFT_BIN=1, X_COORD=part, Y_COORD=0, TEST_T=1, PART_ID=str(part))  # fmt: skip
    w.write("WRR", HEAD_NUM=1, SITE_GRP=255, FINISH_T=4, PART_CNT=4, WAFER_ID="W")
    w.write("TSR", HEAD_NUM=255, SITE_NUM=255, TEST_TYP="P", TEST_NUM=1, EXEC_CNT=4, FAIL_CNT=0)
    w.write("HBR", HEAD_NUM=255, SITE_NUM=255, HBIN_NUM=1, HBIN_CNT=4, HBIN_PF="P", HBIN_NAM="good")
    w.write("MRR", FINISH_T=5)
    return stream.getvalue()


def _record_boundaries(data: bytes, byte_order: str) -> set[int]:
    ends, p = {0}, 0
    while p + 4 <= len(data):
        (length,) = struct.unpack(byte_order + "H", data[p : p + 2])
        p += 4 + length
        ends.add(p)
    return ends


def _decode_everything(data: bytes) -> None:
    read_tables(io.BytesIO(data))
    read_records(io.BytesIO(data))


@pytest.mark.parametrize("byte_order", ["<", ">"])
def test_truncated_at_every_offset(byte_order):
    data = _small_file(byte_order)
    boundaries = _record_boundaries(data, byte_order)
    for n in range(len(data)):
        stream = io.BytesIO(data[:n])
        if n < 6:
            with pytest.raises(NotStdfError):
                read_tables(stream)
        elif n in boundaries:
            read_tables(stream)  # a file cut between records is short, not corrupt
        else:
            with pytest.raises(TruncatedError) as caught:
                read_tables(stream)
            assert caught.value.offset == max(b for b in boundaries if b < n)
            assert caught.value.offset is not None and "ends inside a record" in str(caught.value)


def test_error_names_file_offset_and_record(tmp_path):
    data = _small_file()
    path = tmp_path / "cut.stdf"
    path.write_bytes(data[:-3])
    with pytest.raises(TruncatedError) as caught:
        read_tables(path)
    message = str(caught.value)
    assert str(path) in message and f"byte {caught.value.offset}" in message
    assert caught.value.record == "MRR" and "record MRR" in message


def test_zero_length_file(tmp_path):
    path = tmp_path / "empty.stdf"
    path.write_bytes(b"")
    with pytest.raises(NotStdfError, match=r"empty\.stdf"):
        read_tables(path)


def test_not_stdf():
    with pytest.raises(NotStdfError, match="File Attributes Record"):
        read_tables(io.BytesIO(b"PK\x03\x04 this is a zip, not STDF" * 4))


@pytest.mark.parametrize(
    ("far", "message"),
    [
        (b"\x02\x00\x00\x0a\x02\x03", r"STDF version 3"),
        (b"\x02\x00\x00\x0a\x00\x04", r"CPU_TYPE 0"),
    ],
)
def test_unsupported_version_or_cpu(far, message):
    with pytest.raises(UnsupportedVersionError, match=message):
        read_tables(io.BytesIO(far + _small_file()[6:]))


def test_impossible_record_length():
    data = _small_file()
    bad_ptr = struct.pack("<HBB", 3, 15, 10) + b"\x01\x00\x00"  # PTR too short for its head/site
    with pytest.raises(RecordLengthError) as caught:
        read_tables(io.BytesIO(data + bad_ptr))
    assert caught.value.record == "PTR" and caught.value.offset == len(data)


@pytest.mark.parametrize("compress", [gzip.compress, bz2.compress])
def test_compressed_files_read_like_plain(compress):
    data = _small_file()
    plain = read_tables(io.BytesIO(data))
    packed = read_tables(io.BytesIO(compress(data)))
    for name, table in plain.items():
        assert packed[name].equals(table), name


@pytest.mark.parametrize(
    "payload",
    [
        b"\x1f\x8b\x08\x00" + b"garbage" * 20,  # gzip header, corrupt body
        gzip.compress(_small_file())[:-30],  # gzip stream cut short
        b"BZh9" + b"not bzip2 data" * 10,
        bz2.compress(_small_file())[:-10],
    ],
    ids=["bad-gzip", "cut-gzip", "bad-bzip2", "cut-bzip2"],
)
def test_corrupt_compression(payload):
    with pytest.raises(CompressionError):
        read_tables(io.BytesIO(payload))


def test_bad_file_leaves_no_parquet(tmp_path):
    path = tmp_path / "cut.stdf"
    path.write_bytes(_small_file()[:-3])
    with pytest.raises(TruncatedError):
        to_parquet(path, tmp_path / "out")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cut.stdf"]


def test_parquet_output_is_replaced_not_appended(tmp_path):
    path = tmp_path / "good.stdf"
    path.write_bytes(_small_file())
    first = to_parquet(path, tmp_path / "out")
    rows = {name: pq.read_table(p).num_rows for name, p in first.items()}
    second = to_parquet(path, tmp_path / "out")
    assert {name: pq.read_table(p).num_rows for name, p in second.items()} == rows
    assert sorted(p.name for p in tmp_path.iterdir()) == ["good.stdf", "out"]
    assert rows["parts"] == 4 and rows["results"] == 4 * 4


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400))
def test_random_bytes_only_raise_stdf_errors(data):
    with contextlib.suppress(StdfError):
        _decode_everything(data)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600))
def test_random_records_after_a_valid_far(data):
    with contextlib.suppress(StdfError):
        _decode_everything(_small_file()[:6] + data)


@settings(max_examples=400, deadline=None)
@given(st.data())
def test_corrupted_bytes_only_raise_stdf_errors(data):
    original = bytearray(_small_file(data.draw(st.sampled_from("<>"))))
    for _ in range(data.draw(st.integers(1, 8))):
        position = data.draw(st.integers(0, len(original) - 1))
        original[position] = data.draw(st.integers(0, 255))
    with contextlib.suppress(StdfError):
        _decode_everything(bytes(original))
