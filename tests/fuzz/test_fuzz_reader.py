"""Fuzzing the STDF reader: small tester files, mutated the way corruption and careless
writers mutate them, decode to tables or raise a ``StdfError``: never another exception,
never a hang, and never fewer parts without a word when only a record header was changed.

The word may be an error or a counted warning (a part without its PRR, a skipped record).
One case no reader of headers can tell: a REC_LEN grown (or shrunk) so that the record
swallows whole records, a PRR among them, and the next header read is a true one again.
Those are counted (``--hypothesis-show-statistics``), not failed.
"""

from __future__ import annotations

import bz2
import contextlib
import gzip
import io
import struct
from dataclasses import dataclass, replace
from functools import cache

from hypothesis import event, example, given
from hypothesis import strategies as st
from tests.fuzz.fuzzing import fuzz

from yieldops.stdf import DecodeFacts, StdfError, StdfWriter
from yieldops.stdf.scan import read_records
from yieldops.stdf.tables import read_tables
from yieldops.synth import generate_lot, lot_to_bytes
from yieldops.synth.styles import TESTER_STYLES

PRR = (5, 20)
SMALL_CHUNK = 1 << 16  # the smallest chunk: larger seeds span several


@dataclass(frozen=True)
class Seed:
    """A valid file to mutate, and what it decodes to."""

    name: str
    data: bytes
    order: str  # "<" or ">"
    parts: int

    def headers(self) -> list[tuple[int, int, int, int]]:
        return headers(self.data, self.order)


def headers(data: bytes | bytearray, order: str) -> list[tuple[int, int, int, int]]:
    """(offset, REC_TYP, REC_SUB, REC_LEN) of each whole record, walking the lengths."""
    found, p = [], 0
    while p + 4 <= len(data):
        (length,) = struct.unpack(order + "H", data[p : p + 2])
        found.append((p, data[p + 2], data[p + 3], length))
        p += 4 + length
    return found


def _every_record_type(order: str) -> bytes:
    """One file with every record type the reader knows, and some it counts and skips."""
    stream = io.BytesIO()
    w = StdfWriter(stream, order)
    w.write("ATR", MOD_TIM=1, CMD_LINE="fix")
    w.write("MIR", SETUP_T=1, START_T=2, LOT_ID="L", PART_TYP="P", NODE_NAM="n")
    w.write("RDR", NUM_BINS=2, RTST_BIN=[3, 4])
    w.write("SDR", HEAD_NUM=1, SITE_GRP=1, SITE_CNT=2, SITE_NUM=[0, 1], HAND_TYP="h")
    w.write("PMR", PMR_INDX=1, CHAN_TYP=0, CHAN_NAM="c", PHY_NAM="p", LOG_NAM="l", HEAD_NUM=1)
    w.write("PGR", GRP_INDX=9, GRP_NAM="g", INDX_CNT=1, PMR_INDX=[1])
    w.write("PLR", GRP_CNT=1, GRP_INDX=[9], GRP_MODE=[0], GRP_RADX=[2], PGM_CHAR=["a"],
            RTN_CHAR=["b"], PGM_CHAL=["c"], RTN_CHAL=["d"])  # fmt: skip
    w.write("WCR", WAFR_SIZ=300.0, DIE_HT=1.0, DIE_WID=1.0, WF_UNITS=3, WF_FLAT="D")
    w.write("WIR", HEAD_NUM=1, SITE_GRP=255, START_T=3, WAFER_ID="W")
    w.write("BPS", SEQ_NAME="s")
    stream.write(struct.pack(order + "HBB", 3, 180, 1) + b"img")  # reserved for Image software
    stream.write(struct.pack(order + "HBB", 2, 1, 90) + b"\x00\x00")  # a V4-2007 PSR
    for part in range(4):
        site = part % 2
        w.write("PIR", HEAD_NUM=1, SITE_NUM=site)
        w.write("PTR", TEST_NUM=1, HEAD_NUM=1, SITE_NUM=site, TEST_FLG=0, PARM_FLG=0,
                RESULT=0.5 * part, TEST_TXT="t", ALARM_ID="", OPT_FLAG=0, RES_SCAL=0,
                LLM_SCAL=0, HLM_SCAL=0, LO_LIMIT=0.0, HI_LIMIT=1.0, UNITS="V")  # fmt: skip
        w.write("MPR", TEST_NUM=2, HEAD_NUM=1, SITE_NUM=site, TEST_FLG=0, PARM_FLG=0,
                RTN_ICNT=2, RSLT_CNT=2, RTN_STAT=[1, 2], RTN_RSLT=[1.0, 2.0], TEST_TXT="m",
                ALARM_ID="", OPT_FLAG=0, RES_SCAL=0, LLM_SCAL=0, HLM_SCAL=0, LO_LIMIT=0.0,
                HI_LIMIT=3.0, START_IN=0.0, INCR_IN=0.0, RTN_INDX=[1, 2])  # fmt: skip
        w.write("FTR", TEST_NUM=3, HEAD_NUM=1, SITE_NUM=site, TEST_FLG=0x80, OPT_FLAG=0xFF,
                CYCL_CNT=0, REL_VADR=0, REPT_CNT=0, NUM_FAIL=0, XFAIL_AD=0, YFAIL_AD=0,
                VECT_OFF=0, RTN_ICNT=1, PGM_ICNT=1, RTN_INDX=[1], RTN_STAT=[3], PGM_INDX=[1],
                PGM_STAT=[4], FAIL_PIN=(9, b"\x01\x01"), VECT_NAM="v", TEST_TXT="f")  # fmt: skip
        w.write("GDR", FLD_CNT=2, GEN_DATA=[("U2", 7), ("Cn", "gen")])
        w.write("DTR", TEXT_DAT="text")
        w.write("PRR", HEAD_NUM=1, SITE_NUM=site, PART_FLG=0, NUM_TEST=3, HARD_BIN=1,
                SOFT_BIN=1, X_COORD=part, Y_COORD=0, TEST_T=1, PART_ID=str(part),
                PART_TXT="", PART_FIX=b"\x01")  # fmt: skip
    w.write("EPS")
    w.write("WRR", HEAD_NUM=1, SITE_GRP=255, FINISH_T=4, PART_CNT=4, WAFER_ID="W")
    w.write("TSR", HEAD_NUM=255, SITE_NUM=255, TEST_TYP="P", TEST_NUM=1, EXEC_CNT=4, FAIL_CNT=0)
    w.write("HBR", HEAD_NUM=255, SITE_NUM=255, HBIN_NUM=1, HBIN_CNT=4, HBIN_PF="P", HBIN_NAM="g")
    w.write("SBR", HEAD_NUM=255, SITE_NUM=255, SBIN_NUM=1, SBIN_CNT=4, SBIN_PF="P", SBIN_NAM="g")
    w.write("PCR", HEAD_NUM=255, SITE_NUM=255, PART_CNT=4)
    w.write("MRR", FINISH_T=5)
    return stream.getvalue()


@cache
def seeds() -> tuple[Seed, ...]:
    """Tester files of every synthetic tester style (a small wafer grid; one grid large
    enough to span several chunks), and a file of every record type, in both byte orders."""
    files = []
    for name, style in TESTER_STYLES.items():
        product = replace(style.product, dies_across=10 if name == "igxl" else 8)
        lot = generate_lot(product, 0, 0, wafers=2, retest_failures=style.retest_failures)
        files.append((name, lot_to_bytes(lot, "<", style), "<"))
    lot = generate_lot(replace(TESTER_STYLES["yo-ate"].product, dies_across=16), 1, 0, wafers=2)
    files.append(("yo-ate-large", lot_to_bytes(lot, ">"), ">"))
    files += [(f"every-type{order}", _every_record_type(order), order) for order in "<>"]
    return tuple(
        Seed(name, data, order, read_tables(io.BytesIO(data))["parts"].num_rows)
        for name, data, order in files
    )


@dataclass
class Mutated:
    data: bytearray
    header_only: bool = True  # only REC_LEN or REC_TYP/REC_SUB bytes were changed
    swallowed_prr: bool = False  # a changed REC_LEN made a record cover a PRR (see above)


def _record(draw, seed: Seed) -> tuple[int, int, int, int]:
    return draw(st.sampled_from(seed.headers()[1:]))  # the FAR is checked on its own


def _read_over(data: bytes, order: str, start: int, ends: set[int]) -> int:
    """Where a reader that starts at ``start`` is back on a record boundary of the original
    (``ends``), or the end of the data."""
    p = start
    while p not in ends and p + 4 <= len(data):
        p += 4 + struct.unpack(order + "H", data[p : p + 2])[0]
    return p


def rec_len(draw, seed: Seed, m: Mutated) -> None:
    offset, _, _, length = _record(draw, seed)
    new = draw(
        st.integers(max(length - 8, 0), min(length + 64, 0xFFFF))
        | st.sampled_from([0, 1, 2, 0xFFFF])
        | st.integers(0, 0xFFFF)
    )
    _set_length(seed, m, offset, new)


def _set_length(seed: Seed, m: Mutated, offset: int, new: int) -> None:
    m.data[offset : offset + 2] = struct.pack(seed.order + "H", new)
    records = seed.headers()
    ends = {p + 4 + n for p, _, _, n in records}
    back = _read_over(bytes(m.data), seed.order, offset + 4 + new, ends)
    m.swallowed_prr |= any(offset < p < back for p, *t, _ in records if tuple(t) == PRR)


def rec_len_near_a_boundary(draw, seed: Seed, m: Mutated) -> None:
    """A REC_LEN changed to end near a later record boundary: where a reader that lost the
    boundaries can find them again, and what it skipped on the way can go unseen."""
    records = seed.headers()
    i = draw(st.integers(1, len(records) - 1))
    offset, _, _, length = records[i]
    ahead = sum(4 + n for *_, n in records[i + 1 : i + 1 + draw(st.integers(0, 3))])
    _set_length(seed, m, offset, min(max(length + ahead + draw(st.integers(-8, 8)), 0), 0xFFFF))


def rec_type(draw, seed: Seed, m: Mutated) -> None:
    offset, *_ = _record(draw, seed)
    typ, sub = draw(
        st.tuples(st.sampled_from([0, 1, 2, 5, 10, 15, 20, 50, 180, 181]), st.integers(0, 255))
        | st.tuples(st.integers(0, 255), st.integers(0, 255))
    )
    m.data[offset + 2 : offset + 4] = bytes([typ, sub])


def bit_flip(draw, seed: Seed, m: Mutated) -> None:
    if m.data:  # a truncation may have left nothing
        position = draw(st.integers(0, len(m.data) - 1))
        m.data[position] ^= 1 << draw(st.integers(0, 7))
        m.header_only = False


def truncate(draw, seed: Seed, m: Mutated) -> None:
    del m.data[draw(st.integers(0, len(m.data))) :]
    m.header_only = False


def insert(draw, seed: Seed, m: Mutated) -> None:
    """A record of any type and length (a random body) at a record boundary."""
    offset, *_ = _record(draw, seed)
    body = draw(st.binary(max_size=80))
    typ, sub = draw(st.integers(0, 255)), draw(st.integers(0, 255))
    length = draw(st.just(len(body)) | st.integers(0, 0xFFFF))
    m.data[offset:offset] = struct.pack(seed.order + "HBB", length, typ, sub) + body
    m.header_only = False


def duplicate(draw, seed: Seed, m: Mutated) -> None:
    offset, _, _, length = _record(draw, seed)
    m.data[offset:offset] = seed.data[offset : offset + 4 + length]
    m.header_only = False


def remove(draw, seed: Seed, m: Mutated) -> None:
    offset, _, _, length = _record(draw, seed)
    del m.data[offset : offset + 4 + length]
    m.header_only = False


HEADER_MUTATIONS = (rec_len, rec_len_near_a_boundary, rec_type)
MUTATIONS = {
    f.__name__: f for f in (*HEADER_MUTATIONS, bit_flip, truncate, insert, duplicate, remove)
}


def decode(data: bytes, chunk_size: int, facts: DecodeFacts) -> int:
    """Parts decoded; every entry point is run on small files (read_records decodes every
    field of every record)."""
    parts = read_tables(io.BytesIO(data), chunk_size=chunk_size, facts=facts)["parts"].num_rows
    if len(data) < 40_000:
        read_records(io.BytesIO(data), chunk_size=chunk_size)
    return parts


@fuzz
@given(st.data())
def test_mutated_files_decode_or_raise_a_stdf_error(data):
    seed = data.draw(st.sampled_from(seeds()), label="seed")
    names = data.draw(st.lists(st.sampled_from(sorted(MUTATIONS)), min_size=1, max_size=3))
    m = Mutated(bytearray(seed.data))
    for name in names:  # later mutations pick records of the original: offsets may have moved
        MUTATIONS[name](data.draw, seed, m)
    blob = bytes(m.data)
    wrap = data.draw(st.sampled_from(["plain", "gzip", "bzip2", "cut gzip"]))
    if wrap != "plain":
        blob = bz2.compress(blob) if wrap == "bzip2" else gzip.compress(blob, mtime=0)
        if wrap == "cut gzip":
            blob = blob[: data.draw(st.integers(0, len(blob) - 1))]
            m.header_only = False
    chunk_size = data.draw(st.sampled_from([SMALL_CHUNK, 8 << 20]))
    check(seed, m, blob, chunk_size, single=len(names) == 1)


@fuzz
@given(st.data())
def test_a_changed_header_loses_no_part_unsaid(data):
    """One REC_LEN or record type changed: an error, a warning, or every part is there."""
    seed = data.draw(st.sampled_from(seeds()), label="seed")
    m = Mutated(bytearray(seed.data))
    data.draw(st.sampled_from(HEADER_MUTATIONS))(data.draw, seed, m)
    check(seed, m, bytes(m.data), data.draw(st.sampled_from([SMALL_CHUNK, 8 << 20])), True)


def check(seed: Seed, m: Mutated, blob: bytes, chunk_size: int, single: bool) -> None:
    """Tables or a StdfError; after one change of a header, no part lost without a word."""
    facts = DecodeFacts()
    try:
        parts = decode(blob, chunk_size, facts)
    except StdfError:
        event("StdfError")
        return
    event("decoded, with warnings" if facts.warnings else "decoded")
    if m.header_only and single and parts < seed.parts and not facts.warnings:
        assert m.swallowed_prr, f"{seed.name}: {parts} of {seed.parts} parts, no error, no warning"
        event("a REC_LEN swallowed whole records, a PRR among them: not detectable")


@fuzz
@given(st.binary(max_size=2000), st.sampled_from([b"", b"\x02\x00\x00\x0a\x02\x04"]))
@example(b"\x00\x00\x00\x00" * 10, b"\x02\x00\x00\x0a\x02\x04")
def test_any_bytes_decode_or_raise_a_stdf_error(tail, far):
    for blob in (far + tail, gzip.compress(far + tail), bz2.compress(far + tail)):
        with contextlib.suppress(StdfError):
            decode(blob, SMALL_CHUNK, DecodeFacts())
