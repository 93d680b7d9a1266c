"""Write synthetic lots as STDF V4 files laid out the way production testers write them.

One file per lot: FAR, ATR, MIR, SDR, PMRs, WCR, then per wafer WIR, touchdowns and
WRR, then TSRs, HBRs, SBRs, PCRs and MRR. A touchdown is N PIRs, each test's records
for the N sites in turn, then N PRRs. Only the first PTR/MPR/FTR of a test in the file
carries its name, limits and units; later ones stop after the result.
"""

from __future__ import annotations

import bz2
import contextlib
import gzip
import io
import os
import tempfile
from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from ..stdf.writer import StdfWriter
from .catalog import DEFAULT_PRODUCT
from .fab import (
    DEFAULT_DRIFT,
    DEFAULT_FACILITY,
    Lot,
    Wafer,
    failing_dies,
    generate_lot,
    outside_limits,
)
from .product import (
    AnyTest,
    FunctionalTest,
    LimitedTest,
    MultiPinTest,
    ParametricTest,
    ProductSpec,
)

GENERATOR_VERSION = "1"  # MIR EXEC_VER; bump when the same seed starts giving other bytes
HEAD = 1
SITE_GROUP = 1
ALL = 255  # HEAD_NUM/SITE_NUM of summary records
MISSING_U4 = 0xFFFFFFFF  # "not given" for U4 counts
PART_FAILED = 0x08  # PRR PART_FLG bit 3
TEST_FAILED = 0x80  # PTR/MPR/FTR TEST_FLG bit 7
LIMITS_INCLUSIVE = 0xC0  # PARM_FLG bits 6, 7: a result equal to a limit passes
ABOVE_HIGH, BELOW_LOW = 0x08, 0x10  # PARM_FLG bits 3, 4
LIMITS_VALID = 0x0E  # PTR/MPR OPT_FLAG: scales and limits valid, no spec limits, bit 1 set
FTR_NOTHING_VALID = 0xFF  # FTR OPT_FLAG: none of the optional counts is valid
TSR_ALL_VALID, TSR_ONLY_TIME = 0x00, 0x33  # TSR OPT_FLAG
PIN_FAILED_LOW, PIN_FAILED_HIGH = 5, 6  # MPR RTN_STAT states
COMPRESSION_SUFFIXES = {None: ".stdf", "gz": ".stdf.gz", "bz2": ".stdf.bz2"}
_TEST_TYPES = {ParametricTest: "P", MultiPinTest: "M", FunctionalTest: "F"}

Encoder = Callable[[int], bytes]  # die index -> one encoded record


def synthesize(
    out_dir: str | os.PathLike[str],
    lots: int = 3,
    wafers_per_lot: int = 2,
    seed: int = 0,
    product: ProductSpec = DEFAULT_PRODUCT,
    byte_order: str = "<",
    compression: str | None = None,
    drift: float = DEFAULT_DRIFT,
    first_lot: int = 0,
    facility: str = DEFAULT_FACILITY,
) -> list[Path]:
    """Write lots ``first_lot .. first_lot + lots - 1`` of a series, one file per lot,
    named ``<product>_<lot_id>.stdf[.gz|.bz2]``, tested in fab ``facility``. Returns the
    paths in lot order."""
    if compression not in COMPRESSION_SUFFIXES:
        raise ValueError(f"compression must be one of {list(COMPRESSION_SUFFIXES)}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for lot_index in range(first_lot, first_lot + lots):
        lot = replace(
            generate_lot(product, lot_index, seed, wafers_per_lot, drift), facility=facility
        )
        name = f"{product.name}_{lot.lot_id}{COMPRESSION_SUFFIXES[compression]}"
        paths.append(write_lot(lot, out / name, byte_order))
    return paths


def write_lot(lot: Lot, path: str | os.PathLike[str], byte_order: str = "<") -> Path:
    """Write one lot to one file, atomically; a name ending .gz or .bz2 compresses it."""
    path = Path(path)
    data = lot_to_bytes(lot, byte_order)
    if path.name.endswith(".gz"):
        data = gzip.compress(data, compresslevel=6, mtime=0)  # mtime 0: same seed, same bytes
    elif path.name.endswith(".bz2"):
        data = bz2.compress(data)
    _atomic_write(path, data)
    return path


def lot_to_bytes(lot: Lot, byte_order: str = "<") -> bytes:
    """The lot as an uncompressed STDF V4 byte string."""
    buffer = io.BytesIO()
    writer = StdfWriter(buffer, byte_order)
    _write_header(writer, lot)
    described: set[int] = set()  # tests whose first record (name, limits, units) is written
    for wafer in lot.wafers:
        _write_wafer(writer, lot.product, wafer, described)
    _write_summary(writer, lot)
    return buffer.getvalue()


def _atomic_write(path: Path, data: bytes) -> None:
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.chmod(temp, 0o644)  # mkstemp makes it private; a landed file must be readable
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
        raise


def _write_header(w: StdfWriter, lot: Lot) -> None:
    p = lot.product
    w.write(
        "ATR",
        MOD_TIM=lot.setup_t,
        CMD_LINE=(
            f"yieldops.synth {GENERATOR_VERSION} product={p.name} seed={lot.seed} "
            f"lot_index={lot.lot_index} process_shift={lot.process_shift:g}"
        ),
    )
    w.write(
        "MIR",
        SETUP_T=lot.setup_t, START_T=lot.start_t, STAT_NUM=1, MODE_COD="P", RTST_COD="N",
        PROT_COD=" ", BURN_TIM=65535, CMOD_COD=" ", LOT_ID=lot.lot_id, PART_TYP=p.name,
        NODE_NAM=lot.tester, TSTR_TYP="YO-ATE", JOB_NAM=f"{p.name}_WS1", JOB_REV="1.0",
        SBLOT_ID="", OPER_NAM="synth", EXEC_TYP="yieldops.synth", EXEC_VER=GENERATOR_VERSION,
        TEST_COD="WS1", TST_TEMP="25", USER_TXT="", AUX_FILE="", PKG_TYP="", FAMLY_ID="",
        DATE_COD="", FACIL_ID=lot.facility, FLOOR_ID="SORT-A", PROC_ID=p.process_id,
    )  # fmt: skip
    cols, rows = p.site_layout
    w.write(
        "SDR",
        HEAD_NUM=HEAD, SITE_GRP=SITE_GROUP, SITE_CNT=p.n_sites, SITE_NUM=list(range(p.n_sites)),
        HAND_TYP="YO-PROBER", HAND_ID="PRB-01", CARD_TYP=f"PC-{cols}x{rows}", CARD_ID="PC-0001",
    )  # fmt: skip
    for index, pin in enumerate(_pins(p), start=1):
        for site in range(p.n_sites):
            w.write(
                "PMR",
                PMR_INDX=index, CHAN_TYP=0, CHAN_NAM=f"{site + 1}.{index:02d}", PHY_NAM=pin,
                LOG_NAM=pin, HEAD_NUM=HEAD, SITE_NUM=site,
            )  # fmt: skip
    w.write(
        "WCR",
        WAFR_SIZ=p.wafer_size_mm, DIE_HT=p.die_size_mm, DIE_WID=p.die_size_mm, WF_UNITS=3,
        WF_FLAT="D", CENTER_X=0, CENTER_Y=0, POS_X="R", POS_Y="U",
    )  # fmt: skip


def _pins(product: ProductSpec) -> list[str]:
    """Every pin an MPR reports on, in first-use order; its PMR_INDX is its position + 1.

    The index is the same on every site, so the RTN_INDX of a test's first MPR holds
    for all its later MPRs, whichever site they come from."""
    pins: dict[str, None] = {}
    for test in product.tests:
        if isinstance(test, MultiPinTest):
            pins.update(dict.fromkeys(test.pins))
    return list(pins)


def _write_wafer(w: StdfWriter, product: ProductSpec, wafer: Wafer, described: set[int]) -> None:
    w.write(
        "WIR", HEAD_NUM=HEAD, SITE_GRP=SITE_GROUP, START_T=wafer.start_t, WAFER_ID=wafer.wafer_id
    )
    pin_index = {pin: i for i, pin in enumerate(_pins(product), start=1)}
    encoders = [_encoder(w, test, wafer, described, pin_index) for test in product.tests]
    encode_prr = _prr_encoder(w, wafer)
    pirs = [w.encode("PIR", {"HEAD_NUM": HEAD, "SITE_NUM": s}) for s in range(product.n_sites)]
    sites, num_tests = wafer.site.tolist(), wafer.num_tests.tolist()
    boundaries = [*np.flatnonzero(np.diff(wafer.touchdown)) + 1, wafer.n_dies]
    start = 0
    for stop in boundaries:
        dies = range(start, stop)
        out = [pirs[sites[d]] for d in dies]
        for k, encode in enumerate(encoders):
            out.extend(encode(d) for d in dies if num_tests[d] > k)
        out.extend(encode_prr(d) for d in dies)
        w.stream.write(b"".join(out))
        start = stop
    w.write(
        "WRR",
        HEAD_NUM=HEAD, SITE_GRP=SITE_GROUP, FINISH_T=wafer.finish_t, PART_CNT=wafer.n_dies,
        RTST_CNT=0, ABRT_CNT=0, GOOD_CNT=int(wafer.good.sum()), FUNC_CNT=MISSING_U4,
        WAFER_ID=wafer.wafer_id,
    )  # fmt: skip


def _prr_encoder(w: StdfWriter, wafer: Wafer) -> Encoder:
    columns = {
        "SITE_NUM": wafer.site,
        "PART_FLG": np.where(wafer.good, 0, PART_FAILED),
        "NUM_TEST": wafer.num_tests,
        "HARD_BIN": wafer.hard_bin,
        "SOFT_BIN": wafer.soft_bin,
        "X_COORD": wafer.x,
        "Y_COORD": wafer.y,
        "TEST_T": wafer.test_time_ms,
        "PART_ID": wafer.part_id.astype(str),
    }
    rows = [dict(zip(columns, row)) for row in zip(*(c.tolist() for c in columns.values()))]

    def encode_prr(d: int) -> bytes:
        return w.encode("PRR", {"HEAD_NUM": HEAD, **rows[d]})

    return encode_prr


def _encoder(
    w: StdfWriter, test: AnyTest, wafer: Wafer, described: set[int], pin_index: dict[str, int]
) -> Encoder:
    """A function encoding this test's record for one die; the numpy work is done up front."""
    results = wafer.results[test.test_num]
    flags = (failing_dies(test, results) * TEST_FAILED).tolist()
    common = [
        {"TEST_NUM": test.test_num, "HEAD_NUM": HEAD, "SITE_NUM": site, "TEST_FLG": flag}
        for site, flag in zip(wafer.site.tolist(), flags)
    ]

    def first_time() -> bool:
        fresh = test.test_num not in described
        described.add(test.test_num)
        return fresh

    if isinstance(test, FunctionalTest):
        return _ftr_encoder(w, test, common, first_time)
    if isinstance(test, MultiPinTest):
        return _mpr_encoder(w, test, results, common, first_time, pin_index)
    return _ptr_encoder(w, test, results, common, first_time)


def _ptr_encoder(
    w: StdfWriter,
    test: ParametricTest,
    results: np.ndarray,
    common: list[dict[str, int]],
    first_time: Callable[[], bool],
) -> Encoder:
    parm_flags = _parm_flags(*outside_limits(test, results))
    values = results.tolist()

    def encode_ptr(d: int) -> bytes:
        fields = {**common[d], "PARM_FLG": parm_flags[d], "RESULT": values[d]}
        if first_time():
            fields.update(TEST_TXT=test.name, **_limits(test), UNITS=test.units)
        return w.encode("PTR", fields)

    return encode_ptr


def _mpr_encoder(
    w: StdfWriter,
    test: MultiPinTest,
    results: np.ndarray,
    common: list[dict[str, int]],
    first_time: Callable[[], bool],
    pin_index: dict[str, int],
) -> Encoder:
    below, above = outside_limits(test, results)
    parm_flags = _parm_flags(np.any(below, axis=1), np.any(above, axis=1))
    states = np.where(below, PIN_FAILED_LOW, np.where(above, PIN_FAILED_HIGH, 0)).tolist()
    readings = results.tolist()
    indexes = [pin_index[pin] for pin in test.pins]

    def encode_mpr(d: int) -> bytes:
        fields: dict[str, Any] = {**common[d], "PARM_FLG": parm_flags[d], "RTN_ICNT": len(indexes)}
        fields.update(RSLT_CNT=len(indexes), RTN_STAT=states[d], RTN_RSLT=readings[d])
        if first_time():
            fields.update(TEST_TXT=test.name, **_limits(test), START_IN=0.0, INCR_IN=0.0)
            fields.update(RTN_INDX=indexes, UNITS=test.units)
        return w.encode("MPR", fields)

    return encode_mpr


def _ftr_encoder(
    w: StdfWriter,
    test: FunctionalTest,
    common: list[dict[str, int]],
    first_time: Callable[[], bool],
) -> Encoder:
    # Later FTRs still run up to the array counts: a record ending before a count field
    # is legal STDF but trips common readers (pystdf among them).
    fixed = {
        "OPT_FLAG": FTR_NOTHING_VALID, "CYCL_CNT": 0, "REL_VADR": 0, "REPT_CNT": 0,
        "NUM_FAIL": 0, "XFAIL_AD": 0, "YFAIL_AD": 0, "VECT_OFF": 0, "RTN_ICNT": 0, "PGM_ICNT": 0,
    }  # fmt: skip

    def encode_ftr(d: int) -> bytes:
        fields: dict[str, Any] = {**common[d], **fixed}
        if first_time():
            fields.update(VECT_NAM=test.pattern, TIME_SET="", OP_CODE="", TEST_TXT=test.name)
        return w.encode("FTR", fields)

    return encode_ftr


def _limits(test: LimitedTest) -> dict[str, object]:
    """The optional PTR/MPR fields a tester writes once per test."""
    return {
        "ALARM_ID": "", "OPT_FLAG": LIMITS_VALID, "RES_SCAL": 0, "LLM_SCAL": 0, "HLM_SCAL": 0,
        "LO_LIMIT": test.lo_limit, "HI_LIMIT": test.hi_limit,
    }  # fmt: skip


def _parm_flags(below: np.ndarray, above: np.ndarray) -> list[int]:
    return (LIMITS_INCLUSIVE | below * BELOW_LOW | above * ABOVE_HIGH).tolist()


def _write_summary(w: StdfWriter, lot: Lot) -> None:
    p = lot.product
    for k, test in enumerate(p.tests):
        _write_tsr(w, lot, k, test)
    hard_counts = Counter(np.concatenate([wafer.hard_bin for wafer in lot.wafers]).tolist())
    soft_counts = Counter(np.concatenate([wafer.soft_bin for wafer in lot.wafers]).tolist())
    for b in p.hard_bins:
        w.write(
            "HBR",
            HEAD_NUM=ALL, SITE_NUM=ALL, HBIN_NUM=b.number, HBIN_CNT=hard_counts[b.number],
            HBIN_PF="P" if b.good else "F", HBIN_NAM=b.name,
        )  # fmt: skip
    for b in p.soft_bins:
        w.write(
            "SBR",
            HEAD_NUM=ALL, SITE_NUM=ALL, SBIN_NUM=b.number, SBIN_CNT=soft_counts[b.number],
            SBIN_PF="P" if b.good else "F", SBIN_NAM=b.name,
        )  # fmt: skip
    sites = np.concatenate([wafer.site for wafer in lot.wafers])
    good = np.concatenate([wafer.good for wafer in lot.wafers])
    for head, site, mask in [
        *((HEAD, s, sites == s) for s in range(p.n_sites)),
        (ALL, ALL, np.ones_like(good)),
    ]:
        w.write(
            "PCR",
            HEAD_NUM=head, SITE_NUM=site, PART_CNT=int(mask.sum()), RTST_CNT=0, ABRT_CNT=0,
            GOOD_CNT=int((good & mask).sum()), FUNC_CNT=MISSING_U4,
        )  # fmt: skip
    w.write("MRR", FINISH_T=lot.finish_t)


def _write_tsr(w: StdfWriter, lot: Lot, flow_index: int, test: AnyTest) -> None:
    """Summary over all sites: executions, failures and, for measured tests, result statistics."""
    executed, failed, values = [], [], []
    for wafer in lot.wafers:
        ran = wafer.executed(flow_index)
        results = wafer.results[test.test_num][ran]
        executed.append(int(ran.sum()))
        failed.append(int(failing_dies(test, results).sum()))
        values.append(results.astype(np.float64).ravel())
    measured = np.concatenate(values)
    has_stats = not isinstance(test, FunctionalTest) and measured.size > 0
    w.write(
        "TSR",
        HEAD_NUM=ALL, SITE_NUM=ALL, TEST_TYP=_TEST_TYPES[type(test)], TEST_NUM=test.test_num,
        EXEC_CNT=sum(executed), FAIL_CNT=sum(failed), ALRM_CNT=0, TEST_NAM=test.name,
        SEQ_NAME="", TEST_LBL="", OPT_FLAG=TSR_ALL_VALID if has_stats else TSR_ONLY_TIME,
        TEST_TIM=test.time_ms / 1000,
        TEST_MIN=measured.min() if has_stats else 0.0,
        TEST_MAX=measured.max() if has_stats else 0.0,
        TST_SUMS=measured.sum() if has_stats else 0.0,
        TST_SQRS=(measured**2).sum() if has_stats else 0.0,
    )  # fmt: skip
