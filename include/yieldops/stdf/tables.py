"""The curated tables of an STDF file, decoded from its scanned records in bounded memory.

Per chunk the scanner gives (``scan``), one compiled pass gives every part record its part
and wafer, and each record type is decoded in bulk by the compiled field decoder
(``RecordBlock``). The large tables (parts, results) come out per chunk; the small ones
(lots, wafers, tests, bins) once the whole file has been read.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ..atomic import staged_dir
from ..curated.identity import TestIds
from ..curated.schema import BINS, LOTS, PARTS, RESULTS, STDF_TABLES, TESTS, TIME, WAFERS
from . import kernels
from .records import RecordBlock
from .scan import KIND, KIND_NAMES, Chunk, DecodeFacts, scan_chunks
from .source import (
    DEFAULT_CHUNK_SIZE,
    DEFAULT_LIMITS,
    DecompressionLimits,
    Digest,
    Source,
    open_stdf,
    source_name,
)
from .spec import (
    ALL_HEADS,
    MISSING_COORDINATE,
    MISSING_SOFT_BIN,
    MISSING_U4,
    OPT_NO_HI_LIMIT,
    OPT_NO_HI_SPEC,
    OPT_NO_LO_LIMIT,
    OPT_NO_LO_SPEC,
    OPT_NO_RES_SCAL,
    PART_FAILED,
    PART_VERDICT_INVALID,
    RECORDS,
    SKIPPED_WHY,
    TEST_FAILED,
    TEST_NO_VERDICT,
    TSR_TEST_RECORDS,
)

# What each record does to the part/wafer state (see kernels.assign_parts).
_ROLES = {"PIR": 1, "PRR": 2, "PTR": 3, "MPR": 3, "FTR": 3, "WIR": 4, "WRR": 5}
ROLE = np.zeros(len(KIND_NAMES), dtype=np.int64)
HEAD_AT = np.zeros(len(KIND_NAMES), dtype=np.int64)
SITE_AT = np.zeros(len(KIND_NAMES), dtype=np.int64)
for _name, _role in _ROLES.items():
    ROLE[KIND[_name]] = _role
    HEAD_AT[KIND[_name]] = RECORDS[_name].fixed_offset("HEAD_NUM")
    if _role <= 3:
        SITE_AT[KIND[_name]] = RECORDS[_name].fixed_offset("SITE_NUM")

# Fields decoded for every result record: PTR up to RESULT (its TEST_TXT, the test's name,
# is read in place: it always starts at the same offset), FTR up to TEST_TXT (after the
# vectors, whose lengths vary); the rest (limits, units) only from each test's first record.
PTR_FIELDS = RECORDS["PTR"].index("RESULT") + 1
FTR_FIELDS = RECORDS["FTR"].index("TEST_TXT") + 1


def _array(values: np.ndarray, type_: pa.DataType, valid: np.ndarray | None = None) -> pa.Array:
    mask = None if valid is None or valid.all() else ~valid
    return pa.array(values.astype(type_.to_pandas_dtype(), copy=False), type=type_, mask=mask)


def _times(block: RecordBlock, name: str) -> pa.Array:
    seconds = block.ints(name)
    return pa.array(seconds, type=pa.int64(), mask=~block.has(name) | (seconds == 0)).cast(TIME)


def _counts(block: RecordBlock, name: str) -> pa.Array:
    values = block.ints(name)
    return _array(values, pa.uint32(), block.has(name) & (values != MISSING_U4))


def _verdicts(flags: np.ndarray, valid: np.ndarray) -> pa.Array:
    return pa.array((flags & TEST_FAILED) == 0, mask=~valid | ((flags & TEST_NO_VERDICT) != 0))


class _FileDecoder:
    """Decodes the chunks of one file in order, keeping the state that spans chunks."""

    def __init__(self, path: str, little: bool) -> None:
        self.path = path
        self.little = little
        self.open_part = np.full(1 << 16, -1, dtype=np.int64)
        self.open_wafer = np.full(256, -1, dtype=np.int64)
        self.counters = np.zeros(3, dtype=np.int64)  # next part, next wafer, PRRs missed
        self.record_counts = np.zeros(len(KIND_NAMES), dtype=np.int64)
        self.first: dict[str, dict] = {}  # first MIR, MRR, WCR: their fields by name
        self.wafer_ids: list[str | None] = []  # by wafer index
        self.wafer_starts: list[pa.Table] = []
        self.wafer_ends: list[pa.Table] = []
        self.bins: list[pa.Table] = []
        self.tsr: list[pa.Table] = []
        self.definitions: list[pa.Table] = []  # tests rows from each test's first record
        self.test_ids = TestIds()
        self.key_ids: dict[tuple[str, int], str] = {}  # (record, kernels.test_keys) -> test id
        self.number_keys: dict[tuple[str, int], int] = {}  # (record, TEST_NUM) -> first key
        self.mpr_pins: dict[str, list[int]] = {}  # MPR test id -> RTN_INDX of its first record

    # -- one chunk -------------------------------------------------------------

    def feed(self, chunk: Chunk) -> tuple[pa.Table, pa.Table]:
        """The parts and results of one chunk's records."""
        buf, offsets, lengths, kinds = chunk.buf, chunk.offsets, chunk.lengths, chunk.kinds
        self.record_counts += np.bincount(kinds, minlength=len(KIND_NAMES))
        part_of, wafer_of = kernels.assign_parts(
            buf,
            offsets,
            kinds,
            ROLE,
            HEAD_AT,
            SITE_AT,
            self.open_part,
            self.open_wafer,
            self.counters,
        )
        order, bounds = kernels.group_by_kind(kinds, len(KIND_NAMES))

        def rows(name: str) -> np.ndarray:
            return order[bounds[KIND[name]] : bounds[KIND[name] + 1]]

        def block(name: str, nfields: int | None = None) -> tuple[RecordBlock, np.ndarray]:
            r = rows(name)
            return RecordBlock(buf, offsets[r], lengths[r], RECORDS[name], self.little, nfields), r

        for name in ("MIR", "MRR", "WCR"):
            if name not in self.first and len(rows(name)):
                self.first[name] = _first_record(block(name)[0])
        self._wafers(block, wafer_of)
        self._bins(block)
        self._test_summaries(block)
        parts = self._parts(*block("PRR"), wafer_of, part_of)
        results = pa.concat_tables(
            [
                self._parametric(*block("PTR", PTR_FIELDS), part_of),
                self._multi_pin(*block("MPR"), part_of),
                self._functional(*block("FTR", FTR_FIELDS), part_of),
            ]
        )
        return parts, results

    def _wafers(self, block, wafer_of: np.ndarray) -> None:
        wir, r = block("WIR")
        if len(wir):
            ids = wir.column("WAFER_ID").to_pylist()
            for index, wafer_id in zip(wafer_of[r], ids):
                self.wafer_ids.extend([None] * (index + 1 - len(self.wafer_ids)))
                self.wafer_ids[index] = wafer_id
            self.wafer_starts.append(
                pa.table(
                    {
                        "wafer_index": _array(wafer_of[r], pa.int32()),
                        "head": wir.column("HEAD_NUM"),
                        "start_wafer_id": wir.column("WAFER_ID"),
                        "start_time": _times(wir, "START_T"),
                    }
                )
            )
        wrr, r = block("WRR")
        if len(wrr):
            self.wafer_ends.append(
                pa.table(
                    {
                        "wafer_index": _array(wafer_of[r], pa.int32()),
                        "end_head": wrr.column("HEAD_NUM"),
                        "wafer_id": wrr.column("WAFER_ID"),
                        "finish_time": _times(wrr, "FINISH_T"),
                        "part_count": _counts(wrr, "PART_CNT"),
                        "retest_count": _counts(wrr, "RTST_CNT"),
                        "abort_count": _counts(wrr, "ABRT_CNT"),
                        "good_count": _counts(wrr, "GOOD_CNT"),
                        "functional_count": _counts(wrr, "FUNC_CNT"),
                        "fab_wafer_id": wrr.column("FABWF_ID"),
                        "frame_id": wrr.column("FRAME_ID"),
                        "mask_id": wrr.column("MASK_ID"),
                    }
                )
            )

    def _bins(self, block) -> None:
        for name, kind, prefix in (("HBR", "hard", "HBIN"), ("SBR", "soft", "SBIN")):
            b, _ = block(name)
            if len(b):
                self.bins.append(
                    pa.table(
                        {
                            "bin_type": pa.array([kind] * len(b), pa.string()),
                            "head": b.column("HEAD_NUM"),
                            "site": b.column("SITE_NUM"),
                            "bin_num": b.column(f"{prefix}_NUM"),
                            "count": _counts(b, f"{prefix}_CNT"),
                            "pass_fail": b.column(f"{prefix}_PF"),
                            "bin_name": b.column(f"{prefix}_NAM"),
                        },
                        schema=BINS,
                    )
                )

    def _test_summaries(self, block) -> None:
        tsr, _ = block("TSR")
        if len(tsr):
            self.tsr.append(
                pa.table(
                    {
                        "test_num": tsr.column("TEST_NUM"),
                        "summary": pa.array(tsr.ints("HEAD_NUM") == ALL_HEADS),
                        "tsr_record": tsr.column("TEST_TYP"),
                        "exec_count": _counts(tsr, "EXEC_CNT"),
                        "fail_count": _counts(tsr, "FAIL_CNT"),
                        "tsr_name": tsr.column("TEST_NAM"),
                        "sequence": tsr.column("SEQ_NAME"),
                        "label": tsr.column("TEST_LBL"),
                        "test_time": tsr.column("TEST_TIM"),
                    }
                )
            )

    def _parts(self, prr: RecordBlock, r: np.ndarray, wafer_of, part_of) -> pa.Table:
        wafers = wafer_of[r]
        wafer_ids = pa.array(self.wafer_ids, pa.string()).take(
            pa.array(wafers, mask=(wafers < 0) | (wafers >= len(self.wafer_ids)))
        ) if self.wafer_ids else pa.nulls(len(prr), pa.string())  # fmt: skip
        flags = prr.ints("PART_FLG")
        x, y, soft = prr.ints("X_COORD"), prr.ints("Y_COORD"), prr.ints("SOFT_BIN")
        lot_id = (self.first.get("MIR") or {}).get("LOT_ID")
        return pa.table(
            {
                "part_index": _array(part_of[r], pa.int32()),
                "lot_id": pa.array([lot_id] * len(prr), pa.string()),
                "wafer_index": _array(wafers, pa.int32(), wafers >= 0),
                "wafer_id": wafer_ids,
                "head": prr.column("HEAD_NUM"),
                "site": prr.column("SITE_NUM"),
                "part_id": prr.column("PART_ID"),
                "x": _array(x, pa.int16(), prr.has("X_COORD") & (x != MISSING_COORDINATE)),
                "y": _array(y, pa.int16(), prr.has("Y_COORD") & (y != MISSING_COORDINATE)),
                "hard_bin": prr.column("HARD_BIN"),
                "soft_bin": _array(
                    soft, pa.uint16(), prr.has("SOFT_BIN") & (soft != MISSING_SOFT_BIN)
                ),
                "passed": pa.array(
                    (flags & PART_FAILED) == 0,
                    mask=~prr.has("PART_FLG") | (flags & PART_VERDICT_INVALID != 0),
                ),
                "part_flag": prr.column("PART_FLG"),
                "num_tests": prr.column("NUM_TEST"),
                "test_time_ms": prr.column("TEST_T"),
                "part_text": prr.column("PART_TXT"),
            },
            schema=PARTS,
        )

    def _results(
        self, name: str, blk: RecordBlock, part: np.ndarray, tests: pa.DictionaryArray,
        result: pa.Array, pin: pa.Array, parm_flag: pa.Array, repeat: np.ndarray | None = None,
    ) -> pa.Table:  # fmt: skip
        def per_result(values: np.ndarray) -> np.ndarray:
            return values if repeat is None else np.repeat(values, repeat)

        flags = per_result(blk.ints("TEST_FLG"))
        n = len(flags)
        codes = per_result(tests.indices.to_numpy(zero_copy_only=False))
        return pa.table(
            {
                "part_index": _array(per_result(part), pa.int32()),
                "test_num": _array(per_result(blk.ints("TEST_NUM")), pa.uint32()),
                "test_id": pa.DictionaryArray.from_arrays(pa.array(codes), tests.dictionary),
                "record": pa.DictionaryArray.from_arrays(
                    pa.array(np.zeros(n, dtype=np.int8)), pa.array([name])
                ),
                "head": _array(per_result(blk.ints("HEAD_NUM")), pa.uint8()),
                "site": _array(per_result(blk.ints("SITE_NUM")), pa.uint8()),
                "pin": pin,
                "result": result,
                "test_flag": _array(flags, pa.uint8(), per_result(blk.has("TEST_FLG"))),
                "parm_flag": parm_flag,
                "passed": _verdicts(flags, per_result(blk.has("TEST_FLG"))),
            },
            schema=RESULTS,
        )

    def _parametric(self, ptr: RecordBlock, r: np.ndarray, part_of) -> pa.Table:
        return self._results(
            "PTR", ptr, part_of[r], self._identify(ptr, "PTR"),
            result=_array(ptr.floats("RESULT"), pa.float32(), ptr.has("RESULT")),
            pin=pa.nulls(len(ptr), pa.uint16()),
            parm_flag=_array(ptr.ints("PARM_FLG"), pa.uint8(), ptr.has("PARM_FLG")),
        )  # fmt: skip

    def _functional(self, ftr: RecordBlock, r: np.ndarray, part_of) -> pa.Table:
        return self._results(
            "FTR", ftr, part_of[r], self._identify(ftr, "FTR"),
            result=pa.nulls(len(ftr), pa.float32()),
            pin=pa.nulls(len(ftr), pa.uint16()),
            parm_flag=pa.nulls(len(ftr), pa.uint8()),
        )  # fmt: skip

    def _multi_pin(self, mpr: RecordBlock, r: np.ndarray, part_of) -> pa.Table:
        """One result row per pin: RTN_RSLT exploded, pins from RTN_INDX (else the first MPR's)."""
        tests = self._identify(mpr, "MPR")
        values = mpr.column("RTN_RSLT")
        counts = pc.list_value_length(values).fill_null(0).to_numpy()
        return self._results(
            "MPR", mpr, part_of[r], tests,
            result=values.flatten(),
            pin=self._pins(mpr, tests, counts),
            parm_flag=_array(np.repeat(mpr.ints("PARM_FLG"), counts), pa.uint8(),
                             np.repeat(mpr.has("PARM_FLG"), counts)),
            repeat=counts,
        )  # fmt: skip

    def _pins(self, mpr: RecordBlock, tests: pa.DictionaryArray, counts: np.ndarray) -> pa.Array:
        """PMR index of every result: the record's own RTN_INDX when it lists one per result,
        else its test's first RTN_INDX (later records may leave it out), else null."""
        own = mpr.column("RTN_INDX")
        codes = tests.indices.to_numpy(zero_copy_only=False)
        ids = tests.dictionary.to_pylist()
        for code, first in zip(*np.unique(codes, return_index=True)):
            self.mpr_pins.setdefault(ids[code], own[int(first)].as_py() or [])
        pins = np.zeros(int(counts.sum()), dtype=np.uint16)
        known = np.zeros(len(pins), dtype=bool)
        starts = np.cumsum(counts) - counts
        has_own = (pc.list_value_length(own).fill_null(0).to_numpy() == counts) & (counts > 0)
        place = _positions(starts[has_own], counts[has_own])
        pins[place] = own.filter(pa.array(has_own)).flatten().to_numpy()
        known[place] = True
        for code in np.unique(codes[~has_own & (counts > 0)]):
            default = np.asarray(self.mpr_pins.get(ids[code]) or [], dtype=np.uint16)
            rows = np.flatnonzero((codes == code) & ~has_own & (counts == len(default)))
            place = _positions(starts[rows], counts[rows])
            pins[place] = np.tile(default, len(rows))
            known[place] = True
        return pa.array(pins, mask=~known)

    def _identify(self, hot: RecordBlock, record: str) -> pa.DictionaryArray:
        """Each record's test id (``curated.identity``: record type, number and name), as a
        dictionary array; the definitions of tests met for the first time are recorded.

        Records are grouped by a hash of their number and name bytes, so a name is decoded
        only for a test's first record. A record without a name is the test its number
        first named in the file (the STDF rule for omitted fields: the first record gives
        the default)."""
        nums = hot.ints("TEST_NUM")
        starts, lengths = _name_spans(hot)
        named = lengths > 0
        keys = kernels.test_keys(hot.buf, nums, starts, lengths, named)
        codes, unique = pd.factorize(keys)  # unique keys in order of first appearance
        rows = kernels.first_rows(codes, len(unique)).tolist()
        resolved = []
        for key, num, has_name in zip(unique.tolist(), nums[rows].tolist(), named[rows].tolist()):
            # Keys come in file order: the first key of a number is its first record's.
            first_key = self.number_keys.setdefault((record, num), key)
            resolved.append(key if has_name else first_key)
        new: dict[int, int] = {}  # key -> its first row (a named one: it names the test)
        for key, row in zip(resolved, rows):
            if (record, key) not in self.key_ids:
                new.setdefault(key, row)
        if new:
            self._define_new(hot, record, new)
        ids = [self.key_ids[(record, key)] for key in resolved]
        position = {test_id: i for i, test_id in enumerate(dict.fromkeys(ids))}
        id_codes = np.array([position[test_id] for test_id in ids], dtype=np.int32)
        return pa.DictionaryArray.from_arrays(
            pa.array(id_codes[codes]), pa.array(list(position), pa.string())
        )

    def _define_new(self, hot: RecordBlock, record: str, first_row_of: dict[int, int]) -> None:
        """Give the tests of these keys their ids, and record their definitions (name,
        units, limits) from their first record: later ones often stop after the result,
        so those are decoded in full here."""
        rows = np.array(list(first_row_of.values()))
        if hot.nfields == len(hot.spec.fields):
            full = hot.take(rows)
        else:
            full = RecordBlock(hot.buf, hot.offsets[rows], hot.lengths[rows], hot.spec, self.little)
        names = pc.fill_null(full.text("TEST_TXT"), "")
        ids = []
        for key, num, name in zip(first_row_of, full.ints("TEST_NUM").tolist(), names.to_pylist()):
            self.key_ids[(record, key)] = self.test_ids(record, num, name)
            ids.append(self.key_ids[(record, key)])
        self.definitions.append(_definitions(full, record, pa.array(ids, pa.string()), names))

    # -- end of file -----------------------------------------------------------

    def warnings(self) -> list[str]:
        """What the file holds that the tables leave out, counted."""
        skipped = [
            f"skipped {n} {KIND_NAMES[k]} record(s) ({SKIPPED_WHY[KIND_NAMES[k]]}): not decoded"
            for k, n in enumerate(self.record_counts)
            if n and KIND_NAMES[k] in SKIPPED_WHY
        ]
        unclosed = int(self.counters[2] + (self.open_part >= 0).sum())
        if unclosed:
            skipped.append(
                f"{unclosed} part(s) opened by a PIR got no PRR: no part row, "
                "their results are kept without one"
            )
        return skipped

    def finish(self) -> dict[str, pa.Table]:
        return {
            "lots": self._lots(),
            "wafers": self._wafer_table(),
            "tests": self._tests_table(),
            "bins": pa.concat_tables(self.bins) if self.bins else BINS.empty_table(),
        }

    def _lots(self) -> pa.Table:
        mir, mrr, wcr = (self.first.get(n, {}) for n in ("MIR", "MRR", "WCR"))
        row: dict[str, Any] = {
            "lot_id": mir.get("LOT_ID"), "product": mir.get("PART_TYP"),
            "part_type": mir.get("PART_TYP"), "family": mir.get("FAMLY_ID"),
            "sublot_id": mir.get("SBLOT_ID"), "tester_type": mir.get("TSTR_TYP"),
            "tester_node": mir.get("NODE_NAM"), "job_name": mir.get("JOB_NAM"),
            "job_rev": mir.get("JOB_REV"), "exec_type": mir.get("EXEC_TYP"),
            "exec_ver": mir.get("EXEC_VER"), "test_code": mir.get("TEST_COD"),
            "temperature": mir.get("TST_TEMP"), "facility": mir.get("FACIL_ID"),
            "floor": mir.get("FLOOR_ID"), "process": mir.get("PROC_ID"),
            "operator": mir.get("OPER_NAM"), "mode_code": mir.get("MODE_COD"),
            "setup_time": mir.get("SETUP_T") or None, "start_time": mir.get("START_T") or None,
            "finish_time": mrr.get("FINISH_T") or None, "disposition": mrr.get("DISP_COD"),
            "wafer_size": wcr.get("WAFR_SIZ"), "die_height": wcr.get("DIE_HT"),
            "die_width": wcr.get("DIE_WID"), "wafer_units": wcr.get("WF_UNITS"),
            "wafer_flat": wcr.get("WF_FLAT"), "center_x": wcr.get("CENTER_X"),
            "center_y": wcr.get("CENTER_Y"), "pos_x": wcr.get("POS_X"), "pos_y": wcr.get("POS_Y"),
            "byte_order": "little" if self.little else "big", "stdf_version": 4,
        }  # fmt: skip
        for t in ("setup_time", "start_time", "finish_time"):
            row[t] = None if row[t] is None else datetime.fromtimestamp(row[t], timezone.utc)
        return pa.Table.from_pylist([row], schema=LOTS)

    def _wafer_table(self) -> pa.Table:
        starts = pa.concat_tables(self.wafer_starts) if self.wafer_starts else None
        ends = pa.concat_tables(self.wafer_ends) if self.wafer_ends else None
        if starts is not None and ends is not None:
            joined = starts.join(ends, "wafer_index", join_type="full outer")
        elif starts is not None:
            joined = starts.rename_columns({"start_wafer_id": "wafer_id"})
        elif ends is not None:
            joined = ends.rename_columns({"end_head": "head"})
        else:
            return WAFERS.empty_table()
        columns = {}
        for name in WAFERS.names:
            if name in joined.column_names:
                columns[name] = joined[name]
            else:
                columns[name] = pa.nulls(joined.num_rows, WAFERS.field(name).type)
        if starts is not None and ends is not None:  # WRR wins for the id, WIR for the head
            columns["wafer_id"] = pc.coalesce(joined["wafer_id"], joined["start_wafer_id"])
            columns["head"] = pc.coalesce(joined["head"], joined["end_head"])
        return pa.table(columns, schema=WAFERS).sort_by("wafer_index")

    def _tests_table(self) -> pa.Table:
        """One row per test: its first record's definition, with TSR counts joined on.

        A TSR names its test by type, number and name: it joins the test of that record
        type, number and name; else of that number and name; else the only test of that
        number. A summary TSR (head 255) covers all sites; without one the per-site TSRs
        are added up. Tests named only by a TSR still get a row.
        """
        defs = pa.concat_tables(self.definitions) if self.definitions else TESTS.empty_table()
        if self.tsr:
            defs = self._join_summaries(defs, _tsr_stats(pa.concat_tables(self.tsr)))
        return defs.sort_by([("test_num", "ascending"), ("test_id", "ascending")])

    def _join_summaries(self, defs: pa.Table, stats: pa.Table) -> pa.Table:
        """The definitions with their TSR columns, and a row for each test only a TSR names.
        Only the keys go through Python; the definitions stay columns."""
        nums, records = defs["test_num"].to_pylist(), defs["record"].to_pylist()
        names = [name or "" for name in defs["test_name"].to_pylist()]
        row_of: dict[tuple, int] = {}
        for i in reversed(range(len(nums))):  # the first test of a key wins
            row_of[(records[i], nums[i], names[i])] = row_of[(nums[i], names[i])] = i
            only = row_of.setdefault((nums[i],), i)
            if only != i:
                row_of[(nums[i],)] = -1  # a number of several tests names none alone
        summary = {column: [None] * len(nums) for column in _TSR_COLUMNS}
        summary_only = []
        columns = {name: stats[name].to_pylist() for name in stats.column_names}
        for values in zip(*columns.values()):
            tsr = dict(zip(columns, values))
            num, name = tsr["test_num"], tsr["tsr_name"] or ""
            record = TSR_TEST_RECORDS.get(tsr["tsr_record"] or "")
            i = row_of.get((record, num, name), row_of.get((num, name), row_of.get((num,), -1)))
            if i < 0:
                test_id = self.test_ids(record or "TSR", num, name)
                row = {"test_id": test_id, "test_num": num, "record": record, "test_name": name}
                summary_only.append(row | {c: tsr[c] for c in _TSR_COLUMNS})
                continue
            names[i] = names[i] or name  # a TSR may name its test alone
            for column in _TSR_COLUMNS:
                summary[column][i] = tsr[column]
        joined = defs.set_column(
            defs.schema.get_field_index("test_name"),
            "test_name",
            pa.array([name or None for name in names], pa.string()),
        )
        for column, filled in summary.items():
            at = TESTS.get_field_index(column)
            joined = joined.set_column(at, column, pa.array(filled, TESTS.field(column).type))
        for row in summary_only:
            row["test_name"] = row["test_name"] or None
        only = pa.Table.from_pylist(summary_only, schema=TESTS)
        return pa.concat_tables([joined.cast(TESTS), only])


_TSR_COLUMNS = ("sequence", "label", "exec_count", "fail_count", "test_time")


def _name_spans(hot: RecordBlock) -> tuple[np.ndarray, np.ndarray]:
    """Where each record's TEST_TXT is (start, length; length 0 without a name): in place
    when the fields before it have fixed sizes (PTR), else as decoded."""
    try:
        at = hot.spec.fixed_offset("TEST_TXT")
    except ValueError:
        i = hot.spec.index("TEST_TXT")
        return hot.ival[:, i], np.where(hot.present > i, hot.cnt[:, i], 0)
    return kernels.string_spans(hot.buf, hot.offsets, hot.lengths, at)


def _positions(starts: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Concatenated ranges ``start .. start + count`` (vectorised)."""
    offsets = np.repeat(starts - (np.cumsum(counts) - counts), counts)
    return offsets + np.arange(int(counts.sum()))


def _tsr_stats(tsr: pa.Table) -> pa.Table:
    """One row per test number and name: the summary TSR (all sites) where there is one,
    else the per-site TSRs added up."""
    firsts = ["tsr_record", "sequence", "label", "test_time"]
    aggregations = [("exec_count", "sum"), ("fail_count", "sum"), *((c, "first") for c in firsts)]
    tsr = tsr.set_column(
        tsr.schema.get_field_index("tsr_name"), "tsr_name", pc.fill_null(tsr["tsr_name"], "")
    )

    def grouped(rows: pa.Table) -> pa.Table:
        out = rows.group_by(["test_num", "tsr_name"], use_threads=False).aggregate(aggregations)
        return out.rename_columns(
            [n.removesuffix("_sum").removesuffix("_first") for n in out.column_names]
        )

    summary = grouped(tsr.filter(tsr["summary"]))
    per_site = grouped(tsr.filter(pc.invert(tsr["summary"])))
    covered = pc.is_in(
        pc.binary_join_element_wise(
            per_site["test_num"].cast(pa.string()), per_site["tsr_name"], "\0"
        ),
        pc.binary_join_element_wise(
            summary["test_num"].cast(pa.string()), summary["tsr_name"], "\0"
        ),
    )
    per_site = per_site.filter(pc.invert(covered))
    return pa.concat_tables([summary, per_site.select(summary.column_names)])


def _conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """The table's columns in the schema's order and types; missing ones as nulls."""
    columns = [
        table[name].cast(field.type) if name in table.column_names
        else pa.nulls(table.num_rows, field.type)
        for name, field in zip(schema.names, schema)
    ]  # fmt: skip
    return pa.Table.from_arrays(columns, schema=schema)


def _first_record(block: RecordBlock) -> dict:
    first = block.take(np.array([0]))
    return {f.name: first.column(f.name)[0].as_py() for f in block.spec.fields}


def _definitions(full: RecordBlock, name: str, ids: pa.Array, names: pa.Array) -> pa.Table:
    """Test definition rows from the first record of each test, limits masked by OPT_FLAG."""
    table = {
        "test_id": ids,
        "test_num": full.column("TEST_NUM"),
        "record": pa.array([name] * len(full), pa.string()),
        "test_name": names,
    }
    if name != "FTR":
        # Without an OPT_FLAG no limit, spec or scale is known to be valid.
        opt = np.where(full.has("OPT_FLAG"), full.ints("OPT_FLAG"), 0xFF)

        def limit(field: str, bits: int) -> pa.Array:
            return _array(full.floats(field), pa.float32(), full.has(field) & ((opt & bits) == 0))

        def scale(field: str, bits: int) -> pa.Array:
            return _array(full.ints(field), pa.int8(), full.has(field) & ((opt & bits) == 0))

        table |= {
            "units": full.column("UNITS"),
            "lo_limit": limit("LO_LIMIT", OPT_NO_LO_LIMIT),
            "hi_limit": limit("HI_LIMIT", OPT_NO_HI_LIMIT),
            "lo_spec": limit("LO_SPEC", OPT_NO_LO_SPEC),
            "hi_spec": limit("HI_SPEC", OPT_NO_HI_SPEC),
            "res_scale": scale("RES_SCAL", OPT_NO_RES_SCAL),
            "llm_scale": scale("LLM_SCAL", OPT_NO_LO_LIMIT),
            "hlm_scale": scale("HLM_SCAL", OPT_NO_HI_LIMIT),
        }
    if name == "MPR":
        table["pins"] = full.column("RTN_INDX")
    return _conform(pa.table(table), TESTS)


def iter_tables(
    src: Source,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    progress: Callable[[int], object] | None = None,
    digest: Digest | None = None,
    facts: DecodeFacts | None = None,
    limits: DecompressionLimits = DEFAULT_LIMITS,
) -> Iterator[tuple[str, pa.Table]]:
    """Decode an STDF file into ``(table name, Arrow table)`` pieces.

    ``parts`` and ``results`` come once per chunk of about ``chunk_size``
    bytes (several pieces for large files); ``lots``, ``wafers``, ``tests``
    and ``bins`` come once at the end. ``progress`` is called with the
    number of (decompressed) bytes decoded so far after each chunk; ``digest`` (a hashlib
    object) is fed the decompressed bytes: a hash of the content, whatever the
    compression; ``facts``, when given, is filled once the whole file is decoded; a compressed
    file may decompress only as far as ``limits`` allow. Raises a ``StdfError`` subclass
    naming the file, byte offset and record on bad input.
    """
    path = source_name(src)
    decoder = None
    last_kind = 0
    with open_stdf(src, limits) as stream:
        for little, chunk in scan_chunks(path, stream, chunk_size, digest):
            decoder = decoder or _FileDecoder(path, little)
            parts, results = decoder.feed(chunk)
            yield "parts", parts
            yield "results", results
            if len(chunk.kinds):
                last_kind = int(chunk.kinds[-1])
            if progress:
                progress(chunk.consumed)
    if decoder is None:
        raise RuntimeError(f"{path}: no chunk was scanned")  # scan_chunks yields one at least
    yield from decoder.finish().items()
    if facts is not None:
        counts = decoder.record_counts
        facts.records = {KIND_NAMES[k]: int(n) for k, n in enumerate(counts) if n}
        facts.last_record = KIND_NAMES[last_kind]
        facts.warnings = decoder.warnings()


def read_tables(
    src: Source,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    digest: Digest | None = None,
    facts: DecodeFacts | None = None,
    limits: DecompressionLimits = DEFAULT_LIMITS,
) -> dict[str, pa.Table]:
    """Decode a whole STDF file into the curated tables (see ``curated.schema``); ``digest``,
    ``facts`` and ``limits`` as in :func:`iter_tables`."""
    pieces: dict[str, list[pa.Table]] = {name: [] for name in STDF_TABLES}
    for name, table in iter_tables(src, chunk_size, digest=digest, facts=facts, limits=limits):
        pieces[name].append(table)
    return {
        name: pa.concat_tables(tables) if tables else STDF_TABLES[name].empty_table()
        for name, tables in pieces.items()
    }


def to_parquet(
    src: Source,
    dest: str | os.PathLike,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    progress: Callable[[int], object] | None = None,
) -> dict[str, Path]:
    """Write the curated tables of an STDF file as ``dest/<table>.parquet``, batch by batch.

    Memory stays at one chunk's tables whatever the file size. The tables
    are written into a folder beside ``dest`` that replaces ``dest`` only
    once the whole file has been decoded: a bad file leaves nothing, and a
    rerun replaces the earlier output instead of adding to it.
    """
    dest = Path(dest)
    writers: dict[str, pq.ParquetWriter] = {}
    with staged_dir(dest) as aside:
        try:
            for name, table in iter_tables(src, chunk_size, progress):
                if name not in writers:
                    writers[name] = pq.ParquetWriter(aside / f"{name}.parquet", STDF_TABLES[name])
                writers[name].write_table(table)
        finally:
            for writer in writers.values():
                writer.close()
    return {name: dest / f"{name}.parquet" for name in writers}
