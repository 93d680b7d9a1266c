"""Write synthetic lots as STDF V4 files laid out the way production testers write them.

In the default tester style (``yo-ate``, see :mod:`yieldops.synth.styles`), one file per
lot: FAR, ATR, MIR, SDR, PMRs, WCR, then per wafer WIR, touchdowns and WRR, then TSRs,
HBRs, SBRs, PCRs and MRR. A touchdown is N PIRs, each test's records for the N sites in
turn, then N PRRs. Only the first PTR/MPR/FTR of a test in the file carries its name,
limits and units; later ones stop after the result. Other styles change these habits the
way their testers do.
"""

from __future__ import annotations

import bz2
import gzip
import io
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from itertools import chain, zip_longest
from pathlib import Path
from typing import Any

import numpy as np

from .. import atomic
from ..stdf.spec import (
    ALL_HEADS,
    FTR_OPT_NOTHING_VALID,
    MISSING_COORDINATE,
    MISSING_U4,
    OPT_LIMITS_ONLY,
    PARM_ABOVE_HIGH,
    PARM_BELOW_LOW,
    PARM_LIMITS_INCLUSIVE,
    PART_FAILED,
    PIN_FAILED_HIGH,
    PIN_FAILED_LOW,
    TEST_FAILED,
    TSR_OPT_ALL_VALID,
    TSR_OPT_ONLY_TIME,
)
from ..stdf.writer import StdfWriter
from .fab import (
    DEFAULT_DRIFT,
    DEFAULT_FACILITY,
    TESTERS,
    Lot,
    Wafer,
    failing_dies,
    generate_lot,
    outside_limits,
)
from .product import (
    AnyTest,
    Bin,
    FunctionalTest,
    LimitedTest,
    MultiPinTest,
    ProductSpec,
)
from .styles import YO_ATE, TesterStyle, resolve_style

GENERATOR_VERSION = "1"  # MIR EXEC_VER; bump when the same seed starts giving other bytes
COMPRESSION_SUFFIXES = {None: ".stdf", "gz": ".stdf.gz", "bz2": ".stdf.bz2"}
# How much of a test a PTR/MPR/FTR says besides its result.
BARE, NAMED, DESCRIBED = 0, 1, 2  # nothing; TEST_TXT; TEST_TXT, limits and units

Encoder = Callable[[int], bytes]  # die index -> one encoded record (or several)


def synthesize(
    out_dir: str | os.PathLike[str],
    lots: int = 3,
    wafers_per_lot: int = 2,
    seed: int = 0,
    product: ProductSpec | None = None,
    byte_order: str = "<",
    compression: str | None = None,
    drift: float = DEFAULT_DRIFT,
    first_lot: int = 0,
    facility: str = DEFAULT_FACILITY,
    tester_style: str | TesterStyle | None = None,
) -> list[Path]:
    """Write lots ``first_lot .. first_lot + lots - 1`` of a series, one file per lot,
    named ``<product>_<lot_id>.stdf[.gz|.bz2]``, tested in fab ``facility`` on a tester
    of ``tester_style`` (a name in ``TESTER_STYLES``; default ``yo-ate``). ``product``
    defaults to the style's own test program (YO-7NM-ADC for ``yo-ate``). Returns the
    paths in lot order."""
    if compression not in COMPRESSION_SUFFIXES:
        raise ValueError(f"compression must be one of {list(COMPRESSION_SUFFIXES)}")
    style = resolve_style(tester_style)
    product = product or style.product
    style.check(product)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for lot_index in range(first_lot, first_lot + lots):
        lot = generate_lot(
            product, lot_index, seed, wafers_per_lot, drift, retest_failures=style.retest_failures
        )
        name = f"{product.name}_{lot.lot_id}{COMPRESSION_SUFFIXES[compression]}"
        paths.append(write_lot(replace(lot, facility=facility), out / name, byte_order, style))
    return paths


def write_lot(
    lot: Lot, path: str | os.PathLike[str], byte_order: str = "<", style: TesterStyle = YO_ATE
) -> Path:
    """Write one lot to one file, atomically; a name ending .gz or .bz2 compresses it."""
    path = Path(path)
    data = lot_to_bytes(lot, byte_order, style)
    if path.name.endswith(".gz"):
        data = gzip.compress(data, compresslevel=6, mtime=0)  # mtime 0: same seed, same bytes
    elif path.name.endswith(".bz2"):
        data = bz2.compress(data)
    atomic.write_bytes(path, data, durable=True)
    return path


def lot_to_bytes(lot: Lot, byte_order: str = "<", style: TesterStyle = YO_ATE) -> bytes:
    """The lot as an uncompressed STDF V4 byte string, written with ``style``'s habits."""
    style.check(lot.product)
    buffer = io.BytesIO()
    _LotWriter(StdfWriter(buffer, byte_order), lot, style).write()
    return buffer.getvalue()


@dataclass(frozen=True, eq=False)
class _Run:
    """Parts tested in one go on one head: a wafer's dies, or its retested dies."""

    head: int
    dies: Wafer
    retest: bool


def _pins(product: ProductSpec) -> list[str]:
    """Every pin an MPR reports on, in first-use order; its PMR_INDX is its position + 1.

    The index is the same on every site, so the RTN_INDX of a test's first MPR holds
    for all its later MPRs, whichever site they come from."""
    pins: dict[str, None] = {}
    for test in product.tests:
        if isinstance(test, MultiPinTest):
            pins.update(dict.fromkeys(test.pins))
    return list(pins)


def _on_heads(wafers: tuple[Wafer, ...], heads: int) -> list[list[tuple[int, Wafer]]]:
    """Wafers probed at the same time, one per head (head numbers from 1), in lot order."""
    return [
        [(head, wafer) for head, wafer in enumerate(wafers[i : i + heads], start=1)]
        for i in range(0, len(wafers), heads)
    ]


class _LotWriter:
    """Writes one lot with one tester style's habits."""

    def __init__(self, w: StdfWriter, lot: Lot, style: TesterStyle) -> None:
        self.w, self.lot, self.style, self.product = w, lot, style, lot.product
        self.groups = _on_heads(lot.wafers, style.heads)
        self.runs = [
            _Run(head, dies, retest=dies is not wafer)
            for group in self.groups
            for head, wafer in group
            for dies in wafer.with_retests()
        ]
        self.heads = sorted({run.head for run in self.runs})
        self.site_pairs = [(h, s) for h in self.heads for s in range(self.product.n_sites)]
        self.pin_index = {pin: i for i, pin in enumerate(_pins(self.product), start=1)}
        self.described: set[int] = set()  # tests whose first record (name, limits) is written

    def write(self) -> None:
        self._header()
        for group in self.groups:
            self._wafers(group)
        self._test_summaries()
        parts = self._parts()
        self._bin_summaries(parts)
        self._part_counts(parts)
        if self.style.writes_mrr:
            self.w.write("MRR", FINISH_T=self.lot.finish_t)

    # -- header ---------------------------------------------------------------

    def _header(self) -> None:
        lot, p, style, w = self.lot, self.product, self.style, self.w
        if style.writes_atr:
            command = (
                f"yieldops.synth {GENERATOR_VERSION} product={p.name} seed={lot.seed} "
                f"lot_index={lot.lot_index} process_shift={lot.process_shift:g}"
            )
            if style.name != YO_ATE.name:
                command += f" tester_style={style.name}"
            w.write("ATR", MOD_TIM=lot.setup_t, CMD_LINE=command)
        w.write(
            "MIR",
            SETUP_T=lot.setup_t, START_T=lot.start_t, STAT_NUM=1, BURN_TIM=65535,
            LOT_ID=lot.lot_id, **self._mir_text(),
        )  # fmt: skip
        for head in self.heads:
            self._site_description(head)
        for head in self.heads:
            for index, pin in enumerate(_pins(p), start=1):
                for site in range(p.n_sites):
                    w.write(
                        "PMR",
                        PMR_INDX=index, CHAN_TYP=0, CHAN_NAM=f"{site + 1}.{index:02d}",
                        PHY_NAM=pin, LOG_NAM=pin, HEAD_NUM=head, SITE_NUM=site + style.first_site,
                    )  # fmt: skip
        if not style.final_test:
            w.write(
                "WCR",
                WAFR_SIZ=p.wafer_size_mm, DIE_HT=p.die_size_mm, DIE_WID=p.die_size_mm,
                WF_UNITS=3, WF_FLAT="D", CENTER_X=0, CENTER_Y=0, POS_X="R", POS_Y="U",
            )  # fmt: skip

    def _mir_text(self) -> dict[str, str]:
        lot, p, nodes = self.lot, self.product, self.style.nodes
        node = lot.tester
        if node in TESTERS:  # the style's name for the fab's tester
            node = nodes[TESTERS.index(node) % len(nodes)]
        return self.style.mir_text(
            product=p.name, part_code=re.sub(r"[^a-z0-9]", "", p.name.lower()),
            process=p.process_id, facility=lot.facility, node=node,
            generator_version=GENERATOR_VERSION,
        )  # fmt: skip

    def _site_description(self, head: int) -> None:
        p, first = self.product, self.style.first_site
        cols, rows = p.site_layout
        sites = {
            "HEAD_NUM": head, "SITE_GRP": head, "SITE_CNT": p.n_sites,
            "SITE_NUM": [site + first for site in range(p.n_sites)],
        }  # fmt: skip
        if self.style.final_test:  # a handler and a load board, no probe card
            sites |= {
                "HAND_TYP": "YO-HANDLER", "HAND_ID": f"HDL-{head:02d}", "CARD_TYP": "",
                "CARD_ID": "", "LOAD_TYP": f"LB-{cols}x{rows}", "LOAD_ID": "LB-0001",
            }  # fmt: skip
        else:
            sites |= {
                "HAND_TYP": "YO-PROBER", "HAND_ID": f"PRB-{head:02d}",
                "CARD_TYP": f"PC-{cols}x{rows}", "CARD_ID": f"PC-{head:04d}",
            }  # fmt: skip
        self.w.write("SDR", **sites)

    # -- wafers and parts -----------------------------------------------------

    def _wafers(self, group: list[tuple[int, Wafer]]) -> None:
        """Wafers probed at the same time: their WIRs, their touchdowns taken in turn from
        each head, their WRRs. At final test only the parts."""
        sort = not self.style.final_test
        for head, wafer in group if sort else []:
            self.w.write(
                "WIR", HEAD_NUM=head, SITE_GRP=head, START_T=wafer.start_t,
                WAFER_ID=self._wafer_id(wafer),
            )  # fmt: skip
        streams = [self._touchdowns(head, wafer) for head, wafer in group]
        for chunk in chain.from_iterable(zip_longest(*streams, fillvalue=b"")):
            self.w.stream.write(chunk)
        for head, wafer in group if sort else []:
            self._wafer_results(head, wafer)

    def _wafer_results(self, head: int, wafer: Wafer) -> None:
        parts = wafer.with_retests()
        self.w.write(
            "WRR",
            HEAD_NUM=head, SITE_GRP=head, FINISH_T=wafer.end_t, PART_CNT=wafer.n_parts,
            RTST_CNT=wafer.n_parts - wafer.n_dies, ABRT_CNT=0,
            GOOD_CNT=sum(int(d.good.sum()) for d in parts), FUNC_CNT=MISSING_U4,
            WAFER_ID=self._wafer_id(wafer),
        )  # fmt: skip

    def _wafer_id(self, wafer: Wafer) -> str:
        return wafer.wafer_id if self.style.wafer_ids else ""

    def _touchdowns(self, head: int, wafer: Wafer) -> Iterator[bytes]:
        """The wafer's touchdowns as encoded records, one byte string each: its dies, then
        its retests."""
        for dies in wafer.with_retests():
            yield from self._touchdowns_of(head, dies)

    def _touchdowns_of(self, head: int, dies: Wafer) -> Iterator[bytes]:
        style = self.style
        encoders = [self._encoder(test, dies, head) for test in self.product.tests]
        open_part, close_part = self._part_opener(dies, head), self._prr_encoder(dies, head)
        begin, end = self._section()
        num_tests = dies.num_tests.tolist()
        boundaries = [*np.flatnonzero(np.diff(dies.touchdown)) + 1, dies.n_dies]
        start = 0
        for stop in boundaries:
            touchdown = range(start, stop)
            out: list[bytes] = []
            for group in [[d] for d in touchdown] if style.site_serial else [touchdown]:
                out.extend(open_part(d) for d in group)
                out.append(begin)
                for k, encode in enumerate(encoders):
                    out.extend(encode(d) for d in group if num_tests[d] > k)
                out.append(end)
                out.extend(close_part(d) for d in group)
            yield b"".join(out)
            start = stop

    def _section(self) -> tuple[bytes, bytes]:
        """BPS and EPS around a touchdown's tests, when the style writes them."""
        if self.style.sections is None:
            return b"", b""
        return self.w.encode("BPS", {"SEQ_NAME": self.style.sections}), self.w.encode("EPS", {})

    def _part_opener(self, dies: Wafer, head: int) -> Encoder:
        """What a part starts with: its PIR (unless the style writes none) and DTRs."""
        style, n_sites = self.style, self.product.n_sites
        pirs = [
            self.w.encode("PIR", {"HEAD_NUM": head, "SITE_NUM": s + style.first_site})
            if style.writes_pir else b""
            for s in range(n_sites)
        ]  # fmt: skip
        sites, part_ids = dies.site.tolist(), dies.part_id.tolist()

        def open_part(d: int) -> bytes:
            texts = (t.format(part_id=part_ids[d]) for t in style.part_texts)
            return pirs[sites[d]] + b"".join(self.w.encode("DTR", {"TEXT_DAT": t}) for t in texts)

        return open_part

    def _prr_encoder(self, dies: Wafer, head: int) -> Encoder:
        placed = not self.style.final_test
        columns = {
            "SITE_NUM": dies.site.astype(np.int64) + self.style.first_site,
            "PART_FLG": np.where(dies.good, 0, PART_FAILED),
            "NUM_TEST": dies.num_tests,
            "HARD_BIN": dies.hard_bin,
            "SOFT_BIN": dies.soft_bin,
            "X_COORD": dies.x if placed else np.full(dies.n_dies, MISSING_COORDINATE),
            "Y_COORD": dies.y if placed else np.full(dies.n_dies, MISSING_COORDINATE),
            "TEST_T": dies.test_time_ms,
            "PART_ID": dies.part_id.astype(str),
        }
        rows = [dict(zip(columns, row)) for row in zip(*(c.tolist() for c in columns.values()))]

        def encode_prr(d: int) -> bytes:
            return self.w.encode("PRR", {"HEAD_NUM": head, **rows[d]})

        return encode_prr

    def _encoder(self, test: AnyTest, dies: Wafer, head: int) -> Encoder:
        """A function encoding this test's record for one die; the numpy work is done up
        front."""
        results = dies.results[test.test_num]
        flags = (failing_dies(test, results) * TEST_FAILED).tolist()
        sites = (dies.site.astype(np.int64) + self.style.first_site).tolist()
        common = [
            {"TEST_NUM": test.file_num, "HEAD_NUM": head, "SITE_NUM": site, "TEST_FLG": flag}
            for site, flag in zip(sites, flags)
        ]
        detail = self._detail(test)
        if isinstance(test, FunctionalTest):
            return _ftr_encoder(self.w, test, common, detail)
        if isinstance(test, MultiPinTest):
            indexes = [self.pin_index[pin] for pin in test.pins]
            return _mpr_encoder(self.w, test, results, common, detail, indexes)
        return _ptr_encoder(self.w, test, results, common, detail)

    def _detail(self, test: AnyTest) -> Callable[[], int]:
        """How much the next record of ``test`` says: the first describes it (name, limits,
        units); later ones as much as the style repeats."""
        style = self.style

        def detail() -> int:
            fresh = test.test_num not in self.described
            self.described.add(test.test_num)
            if fresh or style.limits_on_every_record:
                return DESCRIBED
            return NAMED if style.names_on_every_record else BARE

        return detail

    # -- summaries ------------------------------------------------------------

    def _groups(
        self, heads: np.ndarray, sites: np.ndarray, how: str
    ) -> Iterator[tuple[int, int, np.ndarray]]:
        """(HEAD_NUM, SITE_NUM, mask) of each summary record ``how`` asks for: one per site
        of each head, and/or one for all sites (HEAD 255)."""
        if how in ("site", "site_and_lot"):
            for head, site in self.site_pairs:
                yield head, site + self.style.first_site, (heads == head) & (sites == site)
        if how in ("lot", "site_and_lot", "failed"):
            yield ALL_HEADS, self.style.summary_site, np.ones(len(heads), dtype=bool)

    def _test_summaries(self) -> None:
        """TSRs: executions, failures and, for measured tests, result statistics."""
        how = self.style.test_summaries
        for k, test in enumerate(self.product.tests):
            heads, sites, failed, values = self._executions(k, test)
            for head, site, mask in self._groups(heads, sites, how):
                fields = _tsr_counts(test, head, site, failed[mask])
                if how != "failed":
                    self.w.write("TSR", **fields, **_tsr_statistics(test, values[mask].ravel()))
                elif fields["FAIL_CNT"]:  # IG-XL: tests that failed, without statistics
                    self.w.write("TSR", **fields, SEQ_NAME=test.name)

    def _executions(
        self, flow_index: int, test: AnyTest
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Head, site, failed? and results (one row per execution) of every execution."""
        heads, sites, failed, values = [], [], [], []
        for run in self.runs:
            ran = run.dies.executed(flow_index)
            results = run.dies.results[test.test_num][ran]
            heads.append(np.full(len(results), run.head))
            sites.append(run.dies.site[ran])
            failed.append(failing_dies(test, results))
            values.append(results.astype(np.float64).reshape(len(results), -1))
        return (
            np.concatenate(heads),
            np.concatenate(sites),
            np.concatenate(failed),
            np.concatenate(values),
        )

    def _parts(self) -> dict[str, np.ndarray]:
        """Head, site, hard and soft bin, good? and retest? of every part (PRR)."""
        columns: dict[str, list[np.ndarray]] = {}
        for run in self.runs:
            n = run.dies.n_dies
            for name, values in (
                ("head", np.full(n, run.head)), ("site", run.dies.site),
                ("hard", run.dies.hard_bin), ("soft", run.dies.soft_bin),
                ("good", run.dies.good), ("retest", np.full(n, run.retest)),
            ):  # fmt: skip
                columns.setdefault(name, []).append(values)
        return {name: np.concatenate(values) for name, values in columns.items()}

    def _bin_summaries(self, parts: dict[str, np.ndarray]) -> None:
        style = self.style
        groups = list(self._groups(parts["head"], parts["site"], style.bin_summaries))
        for record, prefix, bins, assigned in (
            ("HBR", "HBIN", self.product.hard_bins, parts["hard"]),
            ("SBR", "SBIN", self.product.soft_bins, parts["soft"]),
        ):
            for b in self._listed(bins, assigned):
                name = b.name if style.hard_bin_names or record == "SBR" else ""
                for head, site, mask in groups:
                    self.w.write(record, **{
                        "HEAD_NUM": head, "SITE_NUM": site, f"{prefix}_NUM": b.number,
                        f"{prefix}_CNT": int((assigned[mask] == b.number).sum()),
                        f"{prefix}_PF": "P" if b.good else "F", f"{prefix}_NAM": name,
                    })  # fmt: skip

    def _listed(self, bins: tuple[Bin, ...], assigned: np.ndarray) -> tuple[Bin, ...]:
        """The bins a summary lists: the program's, those that occurred, or the program's and
        the tester's reserved ones."""
        listing = self.style.bins_listed
        if listing == "used":
            return tuple(b for b in bins if (assigned == b.number).any())
        if listing == "program_and_reserved":
            return (*bins, *self.style.reserved_bins)
        return bins

    def _part_counts(self, parts: dict[str, np.ndarray]) -> None:
        for head, site, mask in self._groups(parts["head"], parts["site"], "site_and_lot"):
            self.w.write(
                "PCR",
                HEAD_NUM=head, SITE_NUM=site, PART_CNT=int(mask.sum()),
                RTST_CNT=int((parts["retest"] & mask).sum()),
                ABRT_CNT=0, GOOD_CNT=int((parts["good"] & mask).sum()), FUNC_CNT=MISSING_U4,
            )  # fmt: skip


def _tsr_counts(test: AnyTest, head: int, site: int, failed: np.ndarray) -> dict[str, Any]:
    """The TSR fields up to the test name: which test, executions and failures."""
    return dict(
        HEAD_NUM=head, SITE_NUM=site, TEST_TYP=test.record[0], TEST_NUM=test.file_num,
        EXEC_CNT=len(failed), FAIL_CNT=int(failed.sum()), ALRM_CNT=0, TEST_NAM=test.name,
    )  # fmt: skip


def _tsr_statistics(test: AnyTest, measured: np.ndarray) -> dict[str, Any]:
    """The rest of a TSR: test time and, for measured tests, result statistics."""
    has_stats = not isinstance(test, FunctionalTest) and measured.size > 0
    return dict(
        SEQ_NAME="", TEST_LBL="", OPT_FLAG=TSR_OPT_ALL_VALID if has_stats else TSR_OPT_ONLY_TIME,
        TEST_TIM=test.time_ms / 1000,
        TEST_MIN=measured.min() if has_stats else 0.0,
        TEST_MAX=measured.max() if has_stats else 0.0,
        TST_SUMS=measured.sum() if has_stats else 0.0,
        TST_SQRS=(measured**2).sum() if has_stats else 0.0,
    )  # fmt: skip


def _ptr_encoder(
    w: StdfWriter,
    test: LimitedTest,
    results: np.ndarray,
    common: list[dict[str, int]],
    detail: Callable[[], int],
) -> Encoder:
    parm_flags = _parm_flags(*outside_limits(test, results))
    values = results.tolist()

    def encode_ptr(d: int) -> bytes:
        fields = {**common[d], "PARM_FLG": parm_flags[d], "RESULT": values[d]}
        level = detail()
        if level >= NAMED:
            fields["TEST_TXT"] = test.name
        if level == DESCRIBED:
            fields.update(**_limits(test), UNITS=test.units)
        return w.encode("PTR", fields)

    return encode_ptr


def _mpr_encoder(
    w: StdfWriter,
    test: MultiPinTest,
    results: np.ndarray,
    common: list[dict[str, int]],
    detail: Callable[[], int],
    indexes: list[int],
) -> Encoder:
    below, above = outside_limits(test, results)
    parm_flags = _parm_flags(np.any(below, axis=1), np.any(above, axis=1))
    states = np.where(below, PIN_FAILED_LOW, np.where(above, PIN_FAILED_HIGH, 0)).tolist()
    readings = results.tolist()

    def encode_mpr(d: int) -> bytes:
        fields: dict[str, Any] = {**common[d], "PARM_FLG": parm_flags[d], "RTN_ICNT": len(indexes)}
        fields.update(RSLT_CNT=len(indexes), RTN_STAT=states[d], RTN_RSLT=readings[d])
        level = detail()
        if level >= NAMED:
            fields["TEST_TXT"] = test.name
        if level == DESCRIBED:
            fields.update(**_limits(test), START_IN=0.0, INCR_IN=0.0)
            fields.update(RTN_INDX=indexes, UNITS=test.units)
        return w.encode("MPR", fields)

    return encode_mpr


def _ftr_encoder(
    w: StdfWriter,
    test: FunctionalTest,
    common: list[dict[str, int]],
    detail: Callable[[], int],
) -> Encoder:
    # Later FTRs still run up to the array counts: a record ending before a count field
    # is legal STDF but trips common readers (pystdf among them).
    fixed = {
        "OPT_FLAG": FTR_OPT_NOTHING_VALID, "CYCL_CNT": 0, "REL_VADR": 0, "REPT_CNT": 0,
        "NUM_FAIL": 0, "XFAIL_AD": 0, "YFAIL_AD": 0, "VECT_OFF": 0, "RTN_ICNT": 0, "PGM_ICNT": 0,
    }  # fmt: skip

    def encode_ftr(d: int) -> bytes:
        fields: dict[str, Any] = {**common[d], **fixed}
        if detail() >= NAMED:
            fields.update(VECT_NAM=test.pattern, TIME_SET="", OP_CODE="", TEST_TXT=test.name)
        return w.encode("FTR", fields)

    return encode_ftr


def _limits(test: LimitedTest) -> dict[str, object]:
    """The optional PTR/MPR fields a tester writes once per test."""
    return {
        "ALARM_ID": "", "OPT_FLAG": OPT_LIMITS_ONLY, "RES_SCAL": 0, "LLM_SCAL": 0, "HLM_SCAL": 0,
        "LO_LIMIT": test.lo_limit, "HI_LIMIT": test.hi_limit,
    }  # fmt: skip


def _parm_flags(below: np.ndarray, above: np.ndarray) -> list[int]:
    return (PARM_LIMITS_INCLUSIVE | below * PARM_BELOW_LOW | above * PARM_ABOVE_HIGH).tolist()
