"""Compressed input decompresses only as far as its limits: a bomb is a clear error with
the numbers, a real compressed tester file is never near them."""

from __future__ import annotations

import bz2
import gzip
import io
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from tests.conftest import sample_files

from yieldops.stdf import (
    DecompressionLimitError,
    DecompressionLimits,
    StdfError,
    StdfWriter,
    read_tables,
)
from yieldops.synth import DEFAULT_PRODUCT, generate_lot, lot_to_bytes

MIB = 1 << 20
EPS = b"\x00\x00\x14\x14"  # an End Program Section record: valid STDF, 4 bytes


def stdf_start() -> bytes:
    """The start of a valid file: FAR, MIR, one part."""
    stream = io.BytesIO()
    w = StdfWriter(stream)
    w.write("MIR", SETUP_T=1, START_T=2, LOT_ID="BOMB", PART_TYP="P")
    w.write("PIR", HEAD_NUM=1, SITE_NUM=0)
    w.write("PRR", HEAD_NUM=1, SITE_NUM=0, PART_FLG=0, NUM_TEST=0, HARD_BIN=1, SOFT_BIN=1)
    return stream.getvalue()


def compressed_members(
    compress: Callable[[bytes], bytes], filler: bytes, total: int
) -> Iterator[bytes]:
    """A valid STDF start, then ``total`` bytes of ``filler`` (1 MiB of it compressed once,
    its member repeated: gzip and bzip2 read concatenated members as one stream), made as
    they are written: nothing of the decompressed size is ever held."""
    yield compress(stdf_start())
    block = compress(filler * (MIB // len(filler)))
    for _ in range(total // MIB):
        yield block


def bomb(path: Path, compress: Callable[[bytes], bytes], filler: bytes, total: int) -> Path:
    with path.open("wb") as out:
        for member in compressed_members(compress, filler, total):
            out.write(member)
    return path


@pytest.mark.parametrize("compress", [gzip.compress, bz2.compress], ids=["gzip", "bzip2"])
def test_a_valid_start_and_a_gib_of_zeros_stops_at_the_ratio_limit(tmp_path, compress):
    path = bomb(tmp_path / "zeros.stdf.gz", compress, b"\0", 1 << 30)
    assert path.stat().st_size < 2 * MIB
    limits = DecompressionLimits(ratio_from=MIB)  # checked early: the test stays short
    with pytest.raises(DecompressionLimitError) as caught:
        read_tables(path, limits=limits)
    error, message = caught.value, str(caught.value)
    assert error.path == str(path) and message.startswith(str(path))
    assert "times its size, past the limit of 200" in message
    assert f"{error.offset} bytes from " in message and "compressed bytes read" in message
    assert MIB < error.offset <= 32 * MIB  # stopped within a chunk or so of the floor


def test_a_bomb_of_valid_records_stops_at_the_default_limits(tmp_path):
    """Records the reader accepts (zeros are undefined records: an error of their own)."""
    path = bomb(tmp_path / "eps.stdf.gz", gzip.compress, EPS, 1 << 30)
    with pytest.raises(DecompressionLimitError, match="a decompression bomb") as caught:
        read_tables(path)
    assert 64 * MIB < caught.value.offset < 128 * MIB


def test_zeros_behind_a_valid_start_are_an_error_whatever_the_limits(tmp_path):
    path = bomb(tmp_path / "zeros.stdf.gz", gzip.compress, b"\0", 64 * MIB)
    with pytest.raises(StdfError, match="undefined record type"):
        read_tables(path)


def test_the_size_limit(tmp_path):
    data = stdf_start() + EPS * 100_000
    with pytest.raises(DecompressionLimitError, match="past the limit of 100000 bytes"):
        read_tables(io.BytesIO(gzip.compress(data)), limits=DecompressionLimits(max_bytes=100_000))
    read_tables(io.BytesIO(data), limits=DecompressionLimits(max_bytes=100_000))  # plain: no limit


@pytest.mark.parametrize("compression", ["gz", "bz2"])
def test_compressed_tester_files_are_far_from_the_limits(compression):
    data = lot_to_bytes(generate_lot(DEFAULT_PRODUCT, lot_index=0, seed=0, wafers=2))
    packed = gzip.compress(data) if compression == "gz" else bz2.compress(data)
    # every check from the first byte on: the ratio of a whole lot, 8 to 20 times
    strict = DecompressionLimits(max_ratio=40, ratio_from=0)
    assert read_tables(io.BytesIO(packed), limits=strict)["parts"].num_rows == 2 * 1185


@pytest.mark.samples
@pytest.mark.parametrize(
    "sample", [p for p in sample_files() if p.suffix in (".gz", ".bz2")] or [None]
)
def test_real_compressed_samples_are_far_from_the_limits(sample):
    if sample is None:
        pytest.skip("no compressed samples")
    strict = DecompressionLimits(max_ratio=40, ratio_from=0)  # real ones: about 5 to 20
    assert read_tables(sample, limits=strict)["parts"].num_rows > 0
