"""``yieldops product init``: a product YAML written from real tester files, then checked on them.

1. :func:`profile_files` reads what the files say (MIR, bins, die coordinates, test limits
   and results, the test that failed each failing die first, the record types written)
   into a :class:`ProductProfile`;
2. :func:`product_config` turns it into the product's configuration, and
   :func:`render_yaml` into a YAML file a person can read and edit: every value the files
   decided carries a comment saying what the files said;
3. :func:`check_files` runs the product's expectation suites on the files the way ingest
   does (product matching, then validation), so the YAML is known to pass on real data.

:func:`init_product` does the three in turn and writes ``<config>/products/<name>.yaml``.
"""

from __future__ import annotations

import math
import os
import re
import textwrap
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import yaml

from .atomic import write_text
from .config import (
    PRODUCT_NAME,
    Bins,
    ConfigError,
    Features,
    Gate,
    Match,
    ProductConfig,
    Repeats,
    TesterHabits,
    Validation,
    WaferMap,
    load_product,
    reload_products,
)
from .product_match import FileFacts, NoProductMatch, match_product

if TYPE_CHECKING:
    from .validation import ValidationReport

PARAMETRIC = ("PTR", "MPR")  # results that are measurements with limits; FTR is pass/fail
RESULT_RECORDS = ("PTR", "MPR", "FTR")
# Physical bounds: a test's reference range (its limits, else robust quantiles of its
# results) widened by this many times its size (the width, or the largest end: a dead die
# reading 0 stays inside). They catch impossible values (a tester fault), not failing dies.
BOUND_WIDENING = 10.0
QUANTILES = (0.01, 0.99)
BOUND_DIGITS = 3  # significant digits of a bound, rounded outwards
MIN_DEFAULT_BOUND = 1e9  # the schema's own default
MISSING_MARGIN = 0.05  # added to the highest missing rate seen on good dies
# A test the good dies lack this often is run on a sample of them: it gets a rate of its
# own, so the others keep a tight limit.
SPARSE_TEST = 0.5
# A test failing dies lack this much more often than good dies is run only on dies that
# passed what came before (stop on fail): its absence alone tells the label.
LEAK_GAP = 0.5
YIELD_FLOOR_SHARE = 0.5  # the lowest plausible yield: half the lowest seen
YIELD_STEP = 0.05
RADIUS_MARGIN = (1.1, 1.0)  # radius in dies: the furthest die seen x 1.1 + 1 die
MIN_JOB_PREFIX = 4  # shorter common JOB_NAM prefixes would match unrelated programs
DEFAULT_GOOD_BIN = 1
NOTE_COLUMN = 27  # where the comments of short YAML lines start
COMMENT_WIDTH = 96
_MIR_FIELDS = {"job_name": "JOB_NAM", "family": "FAMLY_ID", "process": "PROC_ID"}
_REGEX_SPECIAL = re.compile(r"([.^$*+?{}\[\]\\|()])")
# What a gated metric scores without skill (see yieldops.training.evaluation).
_GATE_NOTES = {
    "accuracy": "over always predicting the majority class",
    "balanced_accuracy": "no skill: 0.5",
    "roc_auc": "no skill: 0.5",
    "recall_bad_at_precision": "no skill: 0 unless half the dies are bad",
    "wafer_yield_mae": "no skill: the training lots' yield for every wafer",
}


class InitRefused(ValueError):
    """The command cannot run as asked: a bad product name, a YAML that exists, a config
    folder that does not load."""


class UnusableFile(ValueError):
    """A file that decodes but cannot describe a product (no MIR, no parts)."""


# -- 1. what the files say ----------------------------------------------------------------


@dataclass(frozen=True)
class BinRecord:
    """A bin as an HBR or SBR describes it."""

    number: int
    pass_fail: str  # 'P', 'F', or '' when the tester wrote no flag
    name: str


@dataclass(frozen=True)
class FileProfile:
    """One file's part of the profile, before the files are combined.

    ``parts``: part_index, hard_bin, site, head, x, y, wafer_id, passed (one row per PRR).
    ``tests``: one row per parametric test id: test_num, record, test_name, units,
    lo_limit, hi_limit, and of its finite results count, low, high, q_low, q_high.
    ``failures``: the failing results (part_index, test_id, flow: the record's byte offset,
    which orders a part's tests as the tester ran them).
    ``present``: per hard bin (index) and measurement column, the parts that have a value;
    ``bin_parts``: parts per hard bin (what good dies miss is counted once good is known).
    ``names``: the name of every test id of the file.
    """

    path: Path
    facts: FileFacts
    records: dict[str, int]
    parts: pd.DataFrame
    hard_bins: list[BinRecord]
    soft_bins: list[BinRecord]
    tests: pd.DataFrame
    failures: pd.DataFrame
    present: pd.DataFrame
    bin_parts: pd.Series
    names: dict[str, str]
    repeated_results: int


def profile_file(path: Path) -> FileProfile:
    """What one STDF file says; StdfError (naming the file) when it does not decode."""
    from .stdf import read_tables, record_counts

    tables = read_tables(path)
    lots = tables["lots"]
    if not lots.num_rows or lots["lot_id"][0].as_py() is None:
        raise UnusableFile(f"{path}: no MIR: the file does not say which lot it tested")
    if not tables["parts"].num_rows:
        raise UnusableFile(f"{path}: no parts (PRR records): nothing to profile")
    parts = tables["parts"].select(
        ["part_index", "hard_bin", "site", "head", "x", "y", "wafer_id", "passed"]
    )
    parts_frame = parts.to_pandas()
    present, bin_parts = _presence(tables, parts_frame)
    results = tables["results"]
    return FileProfile(
        path=path,
        facts=FileFacts.of(path.name, lots),
        records=record_counts(path),
        parts=parts_frame,
        hard_bins=_bin_records(tables["bins"], "hard"),
        soft_bins=_bin_records(tables["bins"], "soft"),
        tests=_test_stats(tables["tests"], results),
        failures=_failures(path, results),
        present=present,
        bin_parts=bin_parts,
        names=dict(
            zip(_strings(tables["tests"]["test_id"]), tables["tests"]["test_name"].to_pylist())
        ),
        repeated_results=_repeated_results(results),
    )


def _bin_records(bins: pa.Table, bin_type: str) -> list[BinRecord]:
    """The file's HBRs or SBRs, one per bin number (the all-sites summary first, when there)."""
    rows = bins.filter(pc.equal(bins["bin_type"], bin_type)).to_pylist()
    found: dict[int, BinRecord] = {}
    for row in sorted(rows, key=lambda r: r["head"] != 255):
        found.setdefault(
            row["bin_num"],
            BinRecord(row["bin_num"], _pass_fail(row["pass_fail"]), row["bin_name"] or ""),
        )
    return [found[n] for n in sorted(found)]


def _pass_fail(flag: str | None) -> str:
    """'P' or 'F'; anything else (a space, a NUL, nothing) is no flag."""
    flag = (flag or "").strip().upper()
    return flag if flag in ("P", "F") else ""


def _strings(array: pa.ChunkedArray) -> np.ndarray:
    return pc.cast(array, pa.string()).to_numpy(zero_copy_only=False)


def _test_stats(tests: pa.Table, results: pa.Table) -> pd.DataFrame:
    """Definitions and result statistics of each parametric test (PTR, MPR over all pins)."""
    columns = ["test_id", "test_num", "record", "test_name", "units", "lo_limit", "hi_limit"]
    defs = tests.select(columns).to_pandas()
    defs = defs[defs["record"].isin(PARAMETRIC)].drop_duplicates("test_id").set_index("test_id")
    values = pd.DataFrame(
        {
            "test_id": _strings(results["test_id"]),
            "record": _strings(results["record"]),
            "value": results["result"].to_numpy(zero_copy_only=False).astype(np.float64),
        }
    )
    values = values[values["record"].isin(PARAMETRIC) & np.isfinite(values["value"])]
    grouped = values.groupby("test_id")["value"]
    stats = pd.DataFrame(
        {
            "count": grouped.size(),
            "low": grouped.min(),
            "high": grouped.max(),
            "q_low": grouped.quantile(QUANTILES[0]),
            "q_high": grouped.quantile(QUANTILES[1]),
        }
    )
    return defs.join(stats).assign(count=lambda f: f["count"].fillna(0).astype(int))


def _failures(path: Path, results: pa.Table) -> pd.DataFrame:
    """The failing results with each one's place in the test flow.

    The results table is grouped by record type; the tester's order across PTR, MPR and
    FTR is their byte offsets in the file (``read_records``), which the results of each
    type follow row by row (an MPR gives one row per returned result).
    """
    from .stdf import read_records

    kinds = _strings(results["record"])
    flow = np.full(results.num_rows, -1, dtype=np.int64)
    for kind, records in read_records(path, list(RESULT_RECORDS)).items():
        offsets = records["byte_offset"].to_numpy()
        if kind == "MPR":
            per_record = pc.list_value_length(records["RTN_RSLT"]).fill_null(0).to_numpy()
            offsets = np.repeat(offsets, per_record)
        rows = kinds == kind
        if rows.sum() != len(offsets):
            raise RuntimeError(
                f"{path}: {rows.sum()} {kind} results but {len(offsets)} in the records"
            )
        flow[rows] = offsets
    frame = pd.DataFrame(
        {
            "part_index": results["part_index"].to_pandas(),
            "test_id": _strings(results["test_id"]),
            "passed": results["passed"].to_pandas(),
            "flow": flow,
        }
    )
    failed = frame["passed"].eq(False) & frame["part_index"].notna()
    return frame.loc[failed, ["part_index", "test_id", "flow"]].reset_index(drop=True)


def _presence(tables: dict[str, pa.Table], parts: pd.DataFrame) -> tuple[pd.DataFrame, pd.Series]:
    """Parts with a value per measurement column, and parts, per hard bin: the missing-rate
    rule counts good dies only, and which bins are good is known once every file is read."""
    from .validation.frames import measurement_values, measurements

    measured = measurements(tables["tests"])
    # Counted by hard bin: the frame's ``good`` column is not known yet and not used here.
    values = measurement_values(tables["results"], parts.assign(good=True), measured)
    values = values[values["value"].notna()].merge(parts[["part_index", "hard_bin"]])
    bin_parts = parts.groupby("hard_bin").size()
    present = (
        values.groupby(["hard_bin", "measurement"])
        .size()
        .unstack()
        .reindex(index=bin_parts.index, columns=[m.column for m in measured])
        .fillna(0)
        .astype(int)
    )
    return present, bin_parts


def _repeated_results(results: pa.Table) -> int:
    """Results of a test (a pin of it) given more than once on one part."""
    keys = pd.DataFrame(
        {
            "part_index": results["part_index"].to_pandas(),
            "test_id": _strings(results["test_id"]),
            "pin": results["pin"].to_pandas(),
        }
    )
    return int(keys.duplicated().sum())


# -- the files combined -------------------------------------------------------------------


@dataclass(frozen=True)
class MatchChoice:
    """The ``match:`` rule and why it was chosen."""

    fields: dict[str, str]
    reason: str


@dataclass(frozen=True)
class BinsProfile:
    good: list[int]
    declared: list[int]
    from_flags: bool  # good bins from HBR HBIN_PF 'P'; else DEFAULT_GOOD_BIN
    hard: dict[int, BinRecord]
    soft: dict[int, BinRecord]
    counts: Counter[int]  # PRR hard bins
    passed_bins: list[int]  # hard bins of parts the PRR flags passed


@dataclass(frozen=True)
class WaferProfile:
    center: tuple[float, float]
    radius_dies: float
    x_range: tuple[int, int]
    y_range: tuple[int, int]
    dies: int
    furthest: float
    retested_dies: int


@dataclass(frozen=True)
class PhysicalBounds:
    test_id: str
    test_num: int
    name: str
    units: str
    bounds: tuple[float, float]
    basis: str  # what the bounds were widened from, for the comment


@dataclass(frozen=True)
class LabelTest:
    test_id: str
    name: str
    first_fails: int  # failing dies whose first failing test it was
    fails: int  # failing dies that failed it
    bins: list[int]  # the bins of the dies it failed first


@dataclass(frozen=True)
class ProductProfile:
    """What the files of one product say, combined, and the values chosen from it."""

    name: str
    files: list[FileProfile]
    match: MatchChoice
    bins: BinsProfile
    wafer: WaferProfile | None
    bounds: list[PhysicalBounds]
    default_bounds: tuple[float, float]
    label_tests: list[LabelTest]
    unexplained_failures: int  # failing dies without a failing result
    failed_on_good: list[str]  # tests some good die failed: not binning
    writes_pir: bool | None
    writes_mrr: bool | None
    missing_rates: pd.Series | None  # per measurement column, share of good dies without it
    max_missing_rate: float
    sparse_tests: dict[str, float]  # test id -> its own missing rate (run on a sample)
    leaky_tests: dict[str, float]  # test id -> how much more often failing dies lack it
    yields: dict[str, float]  # per file name
    yield_range: tuple[float, float]
    sites: int
    repeated_results: int


def profile_files(paths: Sequence[Path], name: str) -> ProductProfile:
    """The profile of a product from its files (one file or many, of one device)."""
    if not paths:
        raise InitRefused("no files to profile")
    files = [profile_file(Path(p)) for p in paths]
    bins = _bins(files)
    wafer = _wafer(files)
    bounds = _bounds(files)
    label_tests, unexplained, failed_on_good = _label_tests(files, set(bins.good))
    missing = _missing_rates(files, set(bins.good))
    yields = {f.path.name: float(f.parts["hard_bin"].isin(bins.good).mean()) for f in files}
    return ProductProfile(
        name=name,
        files=files,
        match=match_rule([f.facts for f in files], name),
        bins=bins,
        wafer=wafer,
        bounds=bounds,
        default_bounds=_default_bounds(bounds),
        label_tests=label_tests,
        unexplained_failures=unexplained,
        failed_on_good=failed_on_good,
        writes_pir=_habit(f.records.get("PIR", 0) > 0 for f in files),
        writes_mrr=_habit(f.records.get("MRR", 0) > 0 for f in files),
        missing_rates=missing,
        max_missing_rate=_missing_limit(missing),
        sparse_tests=_sparse_tests(missing),
        leaky_tests={
            t: gap
            for t, gap in _leaky_tests(files, set(bins.good), missing).items()
            if t not in {label.test_id for label in label_tests}
        },
        yields=yields,
        yield_range=_yield_range(yields.values()),
        sites=len({(h, s) for f in files for h, s in zip(f.parts["head"], f.parts["site"])}),
        repeated_results=sum(f.repeated_results for f in files),
    )


def match_rule(facts: Sequence[FileFacts], name: str) -> MatchChoice:
    """The narrowest safe rule the files share: a shared PART_TYP; else the shared JOB_NAM
    (exact, or the common prefix), FAMLY_ID and PROC_ID together; else the landing folder.
    An empty field is never used: every file of a tester that leaves it empty shares it."""
    part_types = {f.part_type or "" for f in facts}
    if len(part_types) == 1 and (part_type := part_types.pop()):
        return MatchChoice(
            {"part_type": f"^{literal(part_type)}$"}, "every file names its part type (PART_TYP)"
        )
    fields: dict[str, str] = {}
    jobs = [f.job_name or "" for f in facts]
    if all(jobs) and len(set(jobs)) == 1:
        fields["job_name"] = f"^{literal(jobs[0])}$"
    elif all(jobs) and len(prefix := os.path.commonprefix(jobs)) >= MIN_JOB_PREFIX:  # noqa: RUF071
        fields["job_name"] = f"^{literal(prefix)}"
    for key in ("family", "process"):
        values = {getattr(f, key) or "" for f in facts}
        if len(values) == 1 and (value := values.pop()):
            fields[key] = f"^{literal(value)}$"
    if fields:
        shared = ", ".join(_MIR_FIELDS[key] for key in fields)
        reason = f"the files share no part type (PART_TYP); matched by what they share: {shared}"
        if "job_name" in fields:
            reason += ". Another test program revision (JOB_NAM) may not match: widen it then"
        return MatchChoice(fields, reason)
    return MatchChoice(
        {"path": f"{name}/"},
        f"the files share nothing that names the device: land them under "
        f"<landing>/{name}/ (the tester's upload folder for this product)",
    )


def literal(text: str) -> str:
    """``text`` as a regular expression matching itself (only the special characters
    escaped, so the YAML stays readable)."""
    return _REGEX_SPECIAL.sub(r"\\\1", text)


def _bins(files: Sequence[FileProfile]) -> BinsProfile:
    hard = {b.number: b for f in files for b in f.hard_bins}
    soft = {b.number: b for f in files for b in f.soft_bins}
    counts: Counter[int] = Counter()
    passed: set[int] = set()
    for f in files:
        counts.update(int(b) for b in f.parts["hard_bin"].dropna())
        passed.update(int(b) for b in f.parts.loc[f.parts["passed"].eq(True), "hard_bin"])
    flagged = sorted(n for n, b in hard.items() if b.pass_fail == "P")
    good = flagged or [DEFAULT_GOOD_BIN]
    return BinsProfile(
        good=good,
        declared=sorted(set(hard) | set(counts) | set(good)),
        from_flags=bool(flagged),
        hard=hard,
        soft=soft,
        counts=counts,
        passed_bins=sorted(passed),
    )


def _wafer(files: Sequence[FileProfile]) -> WaferProfile | None:
    """The wafer from the die coordinates: centre of their span, radius of the furthest die
    with a margin; None for final test (no coordinates)."""
    parts = pd.concat([f.parts.assign(file=i) for i, f in enumerate(files)])
    dies = parts.dropna(subset=["x", "y"])
    if dies.empty:
        return None
    x, y = dies["x"].astype(float), dies["y"].astype(float)
    center = ((x.min() + x.max()) / 2, (y.min() + y.max()) / 2)
    furthest = float(np.hypot(x - center[0], y - center[1]).max())
    scale, extra = RADIUS_MARGIN
    return WaferProfile(
        center=(float(center[0]), float(center[1])),
        radius_dies=float(math.ceil(furthest * scale + extra)),
        x_range=(int(x.min()), int(x.max())),
        y_range=(int(y.min()), int(y.max())),
        dies=len(dies),
        furthest=furthest,
        retested_dies=int(dies.duplicated(["file", "wafer_id", "x", "y"]).sum()),
    )


def _bounds(files: Sequence[FileProfile]) -> list[PhysicalBounds]:
    tests = pd.concat([f.tests.reset_index() for f in files])
    found = []
    for test_id, rows in tests.groupby("test_id", sort=False):
        first = rows.iloc[0]
        limits = (rows["lo_limit"].min(), rows["hi_limit"].max())
        seen = (rows["low"].min(), rows["high"].max())
        robust = (rows["q_low"].min(), rows["q_high"].max())
        bounds = physical_bounds(limits, robust, seen)
        if bounds is None:
            continue  # no limits, no results: the default bounds apply
        found.append(
            PhysicalBounds(
                str(test_id),
                int(first["test_num"]),
                str(first["test_name"] or ""),
                str(first["units"] or "").strip(),
                bounds,
                _basis(limits, seen, int(rows["count"].sum())),
            )
        )
    return sorted(found, key=lambda t: (t.test_num, t.test_id))


def physical_bounds(
    limits: tuple[float, float], robust: tuple[float, float], seen: tuple[float, float]
) -> tuple[float, float] | None:
    """Bounds of what a test can physically read: its reference range (each end the limit,
    else the robust quantile of its results) widened by BOUND_WIDENING times its size, and
    never narrower than what the files hold (they must pass). None without either."""
    ends = [_finite(limit, quantile) for limit, quantile in zip(limits, robust)]
    reference = [end for end in ends if end is not None]
    if not reference:
        return None
    low_ref, high_ref = min(reference), max(reference)
    size = max(high_ref - low_ref, abs(low_ref), abs(high_ref)) or 1.0
    low = low_ref - BOUND_WIDENING * size
    high = high_ref + BOUND_WIDENING * size
    if not math.isnan(seen[0]):
        low, high = min(low, seen[0]), max(high, seen[1])
    return _round_out(low, up=False), _round_out(high, up=True)


def _finite(*values: float) -> float | None:
    return next((float(v) for v in values if v is not None and math.isfinite(v)), None)


def _basis(limits: tuple[float, float], seen: tuple[float, float], results: int) -> str:
    lo, hi = (_finite(v) for v in limits)
    if lo is None and hi is None:
        text = "no limits; robust quantiles of the results"
    else:
        text = f"limits [{_text(lo)}, {_text(hi)}]"
    if results:
        text += f"; {results} results in [{_number(seen[0])}, {_number(seen[1])}]"
    return text


def _text(value: float | None) -> str:
    return "none" if value is None else _number(value)


def _number(value: float) -> str:
    return f"{value:.4g}"


def _round_out(value: float, up: bool) -> float:
    """``value`` to BOUND_DIGITS significant digits, away from the range it bounds."""
    if value == 0 or not math.isfinite(value):
        return value
    step = 10 ** (math.floor(math.log10(abs(value))) - BOUND_DIGITS + 1)
    rounded = float(f"{(math.ceil if up else math.floor)(value / step) * step:.{BOUND_DIGITS}g}")
    if (up and rounded < value) or (not up and rounded > value):
        rounded += step if up else -step
    return rounded


def _default_bounds(bounds: Sequence[PhysicalBounds]) -> tuple[float, float]:
    """For tests the files lack (a later program revision): ten times the widest bound,
    as a power of ten, and never narrower than the schema's default."""
    widest = max((abs(v) for t in bounds for v in t.bounds), default=0.0)
    power = 10.0 ** math.ceil(math.log10(widest * 10)) if widest else 0.0
    limit = max(power, MIN_DEFAULT_BOUND)
    return -limit, limit


def _label_tests(
    files: Sequence[FileProfile], good: set[int]
) -> tuple[list[LabelTest], int, list[str]]:
    """The tests whose failure decides a die's bin: those only failing dies failed (a test
    a good die failed does not bin). Each failing die's first failing one, in flow order,
    decided its bin; the others would have, had they come first (a continue-on-fail flow
    logs them), so the model must not see them either.

    Also how many failing dies failed no such test, and the tests good dies failed."""
    failures = []
    for i, f in enumerate(files):
        bins = f.parts.set_index("part_index")["hard_bin"]
        failures.append(f.failures.assign(file=i, hard_bin=f.failures["part_index"].map(bins)))
    failed = pd.concat(failures)
    on_good = failed["hard_bin"].isin(good)
    not_binning = sorted(set(failed.loc[on_good, "test_id"]))
    binning = failed[~failed["test_id"].isin(not_binning)]
    first = binning.sort_values("flow", kind="stable").drop_duplicates(["file", "part_index"])
    names = {test_id: name or "" for f in files for test_id, name in f.names.items()}
    found = []
    for test_id, rows in binning.groupby("test_id"):
        firsts = first[first["test_id"] == test_id]
        found.append(
            LabelTest(
                str(test_id),
                names.get(str(test_id), ""),
                first_fails=len(firsts),
                fails=len(rows.drop_duplicates(["file", "part_index"])),
                bins=sorted(int(b) for b in set(firsts["hard_bin"])),
            )
        )
    failing_dies = sum(int((~f.parts["hard_bin"].isin(good)).sum()) for f in files)
    return (
        sorted(found, key=lambda t: (-t.first_fails, -t.fails, t.test_id)),
        failing_dies - len(first),
        not_binning,
    )


def _missing_rates(files: Sequence[FileProfile], good: set[int]) -> pd.Series | None:
    """Per measurement column, the highest share of a file's good dies lacking it (each
    file is validated on its own columns), highest first; None when no file has a good die."""
    return _absent_share(files, lambda bins: bins.isin(good))


def _absent_share(files: Sequence[FileProfile], chosen) -> pd.Series | None:
    """Per measurement column, the highest share of a file's parts in the ``chosen`` hard
    bins lacking it, highest first; None when no file has such a part."""
    per_file = []
    for f in files:
        parts = int(f.bin_parts[chosen(f.bin_parts.index)].sum())
        if parts:
            per_file.append(1 - f.present[chosen(f.present.index)].sum() / parts)
    if not per_file:
        return None
    rates = pd.concat(per_file, axis=1).max(axis=1)
    return rates.sort_values(ascending=False, kind="stable")


def _test_of_column(column: str) -> str:
    """The test id of a measurement column (a pin's column names its MPR test)."""
    return column.split(".", 1)[0]


def _missing_limit(rates: pd.Series | None) -> float:
    """The highest rate seen among the tests run on every good die, plus a margin; the
    default when there was nothing to count."""
    if rates is None:
        return Validation().max_missing_rate
    common = rates[rates < SPARSE_TEST]
    highest = float(common.max()) if len(common) else 0.0
    return _with_margin(highest)


def _with_margin(rate: float) -> float:
    return min(1.0, math.ceil((rate + MISSING_MARGIN) * 100) / 100)


def _sparse_tests(rates: pd.Series | None) -> dict[str, float]:
    """Tests the flow runs on a sample of the good dies, with their own missing rate."""
    if rates is None:
        return {}
    sparse: dict[str, float] = {}
    for column, rate in rates[rates >= SPARSE_TEST].items():
        test_id = _test_of_column(str(column))
        sparse[test_id] = max(sparse.get(test_id, 0.0), _with_margin(float(rate)))
    return sparse


def _leaky_tests(
    files: Sequence[FileProfile], good: set[int], good_absent: pd.Series | None
) -> dict[str, float]:
    """Tests failing dies lack far more often than good dies (a stop-on-fail flow runs them
    only after the dies passed the rest): test id -> the gap, largest first."""
    failing_absent = _absent_share(files, lambda bins: ~bins.isin(good))
    if failing_absent is None or good_absent is None:
        return {}
    gap = (failing_absent - good_absent.reindex(failing_absent.index).fillna(0)).dropna()
    leaky: dict[str, float] = {}
    for column, value in gap[gap >= LEAK_GAP].sort_values(ascending=False).items():
        leaky.setdefault(_test_of_column(str(column)), float(value))
    return leaky


def _yield_range(yields: Iterable[float]) -> tuple[float, float]:
    lowest = min(yields)
    floor = math.floor(lowest * YIELD_FLOOR_SHARE / YIELD_STEP) * YIELD_STEP
    return round(floor, 2), 1.0


def _habit(per_file: Iterable[bool]) -> bool | None:
    """True when every file has the record, False when none has, None when they differ."""
    seen = set(per_file)
    return seen.pop() if len(seen) == 1 else None


# -- 2. the configuration and its YAML ----------------------------------------------------


def product_config(profile: ProductProfile) -> ProductConfig:
    """The product's configuration from its profile (defaults where the files say nothing)."""
    wafer = profile.wafer
    wafer_map = (
        None if wafer is None else WaferMap(radius_dies=wafer.radius_dies, center=wafer.center)
    )
    return ProductConfig(
        name=profile.name,
        description=_description(profile),
        match=Match(**profile.match.fields),
        tester=TesterHabits(writes_pir=profile.writes_pir, writes_mrr=profile.writes_mrr),
        bins=Bins(good=profile.bins.good, declared=profile.bins.declared),
        wafer=wafer_map,
        label_tests=[t.test_id for t in profile.label_tests],
        validation=Validation(
            yield_range=profile.yield_range,
            max_missing_rate=profile.max_missing_rate,
            missing_rates={t: rate for t, rate in profile.sparse_tests.items()},
            physical_bounds={t.test_id: t.bounds for t in profile.bounds},
            default_bounds=profile.default_bounds,
        ),
        features=Features(
            exclude=list(profile.leaky_tests),
            include_position=wafer is not None,
            include_site=profile.sites > 1,
        ),
        gate=_gate(wafer is not None),
    )


def _gate(wafer_sort: bool) -> Gate:
    """The default gate; final test has no wafers to judge wafer yields on."""
    metrics = Gate().metrics
    if not wafer_sort:
        metrics = {k: v for k, v in metrics.items() if k != "wafer_yield_mae"}
    return Gate(metrics=metrics)


def _description(profile: ProductProfile) -> str:
    facts = profile.files[0].facts
    tester = " ".join(filter(None, (facts.tester_type, facts.job_name)))
    stage = "wafer sort" if profile.wafer else "final test"
    return f"{tester}; {stage}; profiled from {len(profile.files)} file(s)"


def render_yaml(profile: ProductProfile) -> str:
    """The product YAML: :func:`product_config`'s values with what the files said as
    comments."""
    config = product_config(profile)
    sections = [
        _header(profile),
        [f"name: {_flow(config.name)}", f"description: {_flow(config.description)}"],
        _match_lines(profile, config),
        _tester_lines(profile),
        _bins_lines(profile),
        _wafer_lines(profile, config),
        _label_lines(profile),
        _repeats_lines(profile, config.repeats),
        _validation_lines(profile, config),
        _features_lines(profile, config),
        _model_lines(config),
        _gate_lines(config),
    ]
    return "\n".join(line for section in sections for line in section) + "\n"


def _flow(value: Any) -> str:
    """A value as one line of YAML: strings quoted where YAML would read them as another
    type, floats in short form (``1.0e+09``), lists and mappings in flow style."""
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_flow(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_flow(k)}: {_flow(v)}" for k, v in value.items()) + "}"
    if isinstance(value, float) and math.isfinite(value):
        mantissa, e, exponent = f"{value:.6g}".partition("e")
        return (mantissa if "." in mantissa else f"{mantissa}.0") + e + exponent
    text = yaml.safe_dump(value, default_flow_style=True, width=1 << 20, allow_unicode=True)
    return text.removesuffix("\n...\n").strip()


def _comment(text: str, indent: int = 0) -> list[str]:
    """Comment lines, wrapped; a line's own indent is kept on its wrapped lines."""
    lines = []
    for line in _printable(text).splitlines():
        lead = " " * (len(line) - len(line.lstrip()))
        lines += textwrap.wrap(
            line, COMMENT_WIDTH - indent, subsequent_indent=lead + "  ", break_on_hyphens=False
        ) or [""]
    return [f"{' ' * indent}# {line}".rstrip() for line in lines]


def _noted(line: str, note: str) -> str:
    """A YAML line with its comment; the comments of short lines aligned."""
    return f"{line:<{NOTE_COLUMN - 1}} # {_printable(note)}"


def _printable(text: str) -> str:
    """Text from a file as a comment can hold it: control characters escaped."""
    return "".join(c if c.isprintable() or c == "\n" else repr(c)[1:-1] for c in text)


def _header(profile: ProductProfile) -> list[str]:
    names = ", ".join(f.path.name for f in profile.files)
    return _comment(
        f"{profile.name}: written by `yieldops product init` from {names}.\n"
        "Every value below comes from those files or is a default; the comments say what the "
        "files said. Edit freely, then check with `yieldops check`."
    )


def _match_lines(profile: ProductProfile, config: ProductConfig) -> list[str]:
    said = "\n".join(f"  {f.path.name}: {f.facts.describe()}" for f in profile.files)
    assert config.match is not None
    return [
        *_comment(f"Which landed files are this product's: {profile.match.reason}."),
        *_comment(f"The files say:\n{said}"),
        "match:",
        *(f"  {key}: {_flow(value)}" for key, value in config.match.given().items()),
    ]


def _tester_lines(profile: ProductProfile) -> list[str]:
    counts = "\n".join(
        f"  {f.path.name}: PIR {f.records.get('PIR', 0)}, MRR {f.records.get('MRR', 0)}, "
        f"PRR {f.records.get('PRR', 0)}"
        for f in profile.files
    )
    return [
        *_comment(f"What the tester writes (null: the files differ). The files:\n{counts}"),
        "tester:",
        f"  writes_pir: {_flow(profile.writes_pir)}",
        f"  writes_mrr: {_flow(profile.writes_mrr)}",
    ]


def _bins_lines(profile: ProductProfile) -> list[str]:
    bins = profile.bins
    if bins.from_flags:
        why = "good: the bins the HBR records flag 'P' (HBIN_PF)"
    else:
        why = (
            f"good: bin {DEFAULT_GOOD_BIN}, assumed: the files' HBR records carry no P/F flag"
            f" (HBIN_PF); the PRR flags parts of bins {bins.passed_bins} as passed. Check it"
        )
    described = [n for n in bins.declared if bins.counts.get(n) or _bin_name(bins, n)]
    listed = [f"  {_bin_text(bins, n)}: {_count(bins.counts.get(n, 0), 'part')}" for n in described]
    unused = [n for n in bins.declared if n not in described]
    if unused:
        by_flag = {
            flag: [n for n in unused if _bin_flag(bins, n) == flag]
            for flag in dict.fromkeys(_bin_flag(bins, n) for n in unused)
        }
        listed.append(
            "  no name and no parts: "
            + "; ".join(f"{_ranges(numbers)} ({flag})" for flag, numbers in by_flag.items())
        )
    soft = ", ".join(f"{b.number} {b.name}".rstrip() for b in bins.soft.values())
    return [
        "bins:",
        *_comment(why, 2),
        f"  good: {_flow(bins.good)}",
        *_comment("declared: every hard bin of the HBR records and the parts (PRR):", 2),
        *_comment("\n".join(listed), 2),
        *(_comment(f"soft bins (SBR): {soft}", 2) if soft else []),
        f"  declared: {_flow(bins.declared)}",
    ]


def _bin_name(bins: BinsProfile, number: int) -> str:
    return bins.hard[number].name.strip() if number in bins.hard else ""


def _bin_flag(bins: BinsProfile, number: int) -> str:
    record = bins.hard.get(number)
    return "no HBR" if record is None else record.pass_fail or "no P/F"


def _bin_text(bins: BinsProfile, number: int) -> str:
    """``4 DC (F)``: number, HBR name and P/F flag."""
    flag = f"({_bin_flag(bins, number)})"
    return " ".join(filter(None, (str(number), _bin_name(bins, number), flag)))


def _ranges(numbers: Sequence[int]) -> str:
    """``0-4, 9, 12-13``: sorted numbers with runs joined."""
    runs: list[list[int]] = []
    for n in sorted(numbers):
        if runs and n == runs[-1][-1] + 1:
            runs[-1].append(n)
        else:
            runs.append([n])
    return ", ".join(str(r[0]) if len(r) == 1 else f"{r[0]}-{r[-1]}" for r in runs)


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _wafer_lines(profile: ProductProfile, config: ProductConfig) -> list[str]:
    wafer = profile.wafer
    if wafer is None or config.wafer is None:
        return _comment(
            "No wafer: the parts have no die coordinates (final test). The validation "
            "checks no die position and the model sees none (features.include_position)."
        )
    (x0, x1), (y0, y1) = wafer.x_range, wafer.y_range
    return [
        *_comment(
            f"From the die coordinates: {wafer.dies} dies, x {x0}..{x1}, y {y0}..{y1}; the "
            f"centre of their span; the furthest die {wafer.furthest:.1f} dies from it; the "
            "radius with a margin."
        ),
        "wafer:",
        f"  radius_dies: {_flow(config.wafer.radius_dies)}",
        f"  center: {_flow(list(config.wafer.center))}",
    ]


def _label_lines(profile: ProductProfile) -> list[str]:
    lines = _comment(
        "Tests whose failure decides a die's bin: the tests only failing dies failed (each "
        "failing die's first one in flow order decided its bin). The model predicts the "
        "outcome without them."
    )
    if profile.unexplained_failures:
        lines += _comment(
            f"{profile.unexplained_failures} failing die(s) had no failing result in the files"
            " (binned by a test that is not datalogged?)."
        )
    if profile.failed_on_good:
        lines += _comment(
            f"Failed by good dies, so not binning: {', '.join(profile.failed_on_good)}."
        )
    if not profile.label_tests:
        return [*lines, "label_tests: []"]
    return [
        *lines,
        "label_tests:",
        *(_noted(f"  - {_flow(t.test_id)}", _label_note(t)) for t in profile.label_tests),
    ]


def _label_note(test: LabelTest) -> str:
    note = f"{test.name}: failed by {_count(test.fails, 'failing die')}"
    if test.first_fails:
        note += f", first by {test.first_fails} (bin {_ranges(test.bins)})"
    return note


def _repeats_lines(profile: ProductProfile, repeats: Repeats) -> list[str]:
    retested = profile.wafer.retested_dies if profile.wafer else 0
    return [
        *_comment(
            f"A test given again on a part, and a die tested again: which result counts. "
            f"The files: {profile.repeated_results} repeated result(s), "
            f"{retested} die(s) tested again."
        ),
        "repeats:",
        _noted(f"  tests: {repeats.tests}", "last, first, or all (as <column>.r2, .r3, ...)"),
        _noted(f"  dies: {repeats.dies}", "last, first, or all (each part its own row)"),
    ]


def _validation_lines(profile: ProductProfile, config: ProductConfig) -> list[str]:
    v = config.validation
    yields = ", ".join(f"{name} {share:.1%}" for name, share in profile.yields.items())
    lines = [
        "validation:",
        *_comment(
            f"Plausible file yield: the lowest seen halved, up to 100 %. The files: {yields}."
            + (" This range checks nothing: narrow it." if v.yield_range == (0.0, 1.0) else ""),
            2,
        ),
        f"  yield_range: {_flow(list(v.yield_range))}",
        *_comment(
            "Per measurement, the share of good dies without it (a stop-on-fail flow skips "
            f"tests on failing dies only): {_missing_text(profile.missing_rates)}",
            2,
        ),
        f"  max_missing_rate: {_flow(v.max_missing_rate)}",
        *_sparse_lines(profile),
        *_comment("Tests not listed below (new in a later program revision):", 2),
        f"  default_bounds: {_flow(list(v.default_bounds))}",
        *_comment(
            "Results outside these are impossible (a tester or datalog fault), not failing "
            f"dies: each test's limits (else the {QUANTILES[0]:g} and {QUANTILES[1]:g} quantiles "
            f"of its results) widened by {BOUND_WIDENING:g} times their size, never narrower "
            "than the files' results.",
            2,
        ),
    ]
    if not profile.bounds:
        return [*lines, "  physical_bounds: {}"]
    return [
        *lines,
        "  physical_bounds:",
        *(
            _noted(
                f"    {_flow(t.test_id)}: {_flow(list(t.bounds))}",
                ", ".join(filter(None, (t.name, t.units))) + f": {t.basis}",
            )
            for t in profile.bounds
        ),
    ]


def _sparse_lines(profile: ProductProfile) -> list[str]:
    if not profile.sparse_tests:
        return []
    return [
        *_comment(
            f"Tests the good dies lack {SPARSE_TEST:.0%} of the time or more (the flow runs "
            "them on a sample): their own rate, so max_missing_rate stays tight for the rest.",
            2,
        ),
        "  missing_rates:",
        *(f"    {_flow(test_id)}: {_flow(rate)}" for test_id, rate in profile.sparse_tests.items()),
    ]


def _missing_text(rates: pd.Series | None) -> str:
    if rates is None:
        return "the files have no good die to count on: the default."
    if not len(rates) or rates.iloc[0] == 0:
        return "no good die of the files misses one; the limit leaves a margin."
    worst = ", ".join(f"{column} {rate:.0%}" for column, rate in rates.head(3).items())
    return (
        f"the files: highest {worst}; median {rates.median():.0%}. The limit is the highest "
        f"among the tests missing on under {SPARSE_TEST:.0%} of good dies, plus a margin."
    )


def _features_lines(profile: ProductProfile, config: ProductConfig) -> list[str]:
    f = config.features
    return [
        *_comment("The yield model (yield_training DAG)."),
        "features:",
        _noted(
            f"  tests: {_flow(f.tests)}",
            "null: every parametric test except label_tests and exclude",
        ),
        *_exclude_lines(profile),
        _noted(
            f"  include_position: {_flow(f.include_position)}",
            "x, y and radius from the wafer centre",
        ),
        _noted(f"  include_site: {_flow(f.include_site)}", "the tester site (false: one site)"),
    ]


def _exclude_lines(profile: ProductProfile) -> list[str]:
    if not profile.leaky_tests:
        return ["  exclude: []"]
    names = {test_id: name for f in profile.files for test_id, name in f.names.items()}
    return [
        *_comment(
            "Failing dies lack these far more often than good dies (a stop-on-fail flow runs "
            "them only on dies that passed what came before): their absence alone would tell "
            "the model the label. The gap in missing share, failing minus good:",
            2,
        ),
        "  exclude:",
        *(
            _noted(f"    - {_flow(test_id)}", f"{names.get(test_id) or test_id}: {gap:.0%}")
            for test_id, gap in profile.leaky_tests.items()
        ),
    ]


def _model_lines(config: ProductConfig) -> list[str]:
    m = config.model
    return [
        "model:",
        f"  estimator: {m.estimator}",
        _noted(f"  params: {_flow(m.params)}", "estimator arguments"),
        f"  random_state: {m.random_state}",
        _noted(f"  holdout_lots: {m.holdout_lots}", "the newest lot (MIR start time) is held out"),
        _noted(f"  threads: {m.threads}", "OpenMP threads; workers share cores"),
    ]


def _gate_lines(config: ProductConfig) -> list[str]:
    gate = config.gate
    lines = [
        "gate:",
        *_comment(
            "Each metric beside its no-skill baseline on the same holdout. min_lift: at least "
            "this much better than that baseline; threshold: absolute; tolerance: how much "
            "worse than the champion. The defaults, measured on the synthetic fab.",
            2,
        ),
        _noted(
            f"  recall_precision: {_flow(gate.recall_precision)}",
            "recall_bad_at_precision: this share of the flagged dies really bad",
        ),
        "  metrics:",
    ]
    for metric, rule in gate.metrics.items():
        line = f"    {metric}: {_flow(rule.model_dump(exclude_none=True))}"
        lines.append(_noted(line, _GATE_NOTES[metric]) if metric in _GATE_NOTES else line)
    return lines


# -- 3. the files through matching and validation -----------------------------------------


@dataclass(frozen=True)
class FileCheck:
    """One file run through product matching and the product's suites, as ingest runs it."""

    path: Path
    key: str  # the landing key it was matched as
    problem: str | None = None  # matching went wrong (another product, or none)
    report: ValidationReport | None = None
    parts: int = 0

    @property
    def passed(self) -> bool:
        return self.problem is None and self.report is not None and self.report.success


def landing_key(name: str, path: Path) -> str:
    """Where the file is taken to land: the product's own folder of the landing zone
    (what a ``match.path`` rule expects; the other rules do not look at it)."""
    return f"{name}/{path.name}"


def check_files(paths: Sequence[Path], name: str, config_dir: Path) -> list[FileCheck]:
    return [check_file(Path(p), name, config_dir) for p in paths]


def check_file(path: Path, name: str, config_dir: Path) -> FileCheck:
    """Match the file to a product and validate it, as ``yieldops.ingest`` does."""
    from .ingest import with_product
    from .stdf import read_tables
    from .validation import validate_tables

    tables = read_tables(path)
    key = landing_key(name, path)
    try:
        config = match_product(FileFacts.of(key, tables["lots"]), config_dir)
    except NoProductMatch as exc:
        return FileCheck(path, key, problem=str(exc))
    if config.name != name:
        return FileCheck(
            path,
            key,
            problem=f"product {config.name!r} ({config.source}) matches it first, "
            f"before {name!r}: narrow that product's match: block",
        )
    report = validate_tables(with_product(tables, name), config, run_name=f"init/{path.name}")
    return FileCheck(path, key, report=report, parts=tables["parts"].num_rows)


# -- the command --------------------------------------------------------------------------


@dataclass(frozen=True)
class InitOutcome:
    path: Path
    profile: ProductProfile
    checks: list[FileCheck]
    target: str  # what became of the product's deployment target

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)


def product_path(name: str, config_dir: Path) -> Path:
    return config_dir / "products" / f"{name}.yaml"


def init_product(
    paths: Sequence[Path], name: str, config_dir: Path, *, force: bool = False
) -> InitOutcome:
    """Profile the files, write ``<config_dir>/products/<name>.yaml``, check the files on it.

    InitRefused for a bad name, a YAML that exists (without ``force``) or another product
    of that name; UnusableFile or StdfError (naming the file) for a file that cannot be
    profiled. Nothing is written unless every file was profiled.
    """
    target = product_path(name, config_dir)
    _refuse_bad_target(name, target, config_dir, force)
    profile = profile_files(paths, name)
    target.parent.mkdir(parents=True, exist_ok=True)
    write_text(target, render_yaml(profile))
    reload_products()
    deployment = ensure_target(name, config_dir)
    return InitOutcome(target, profile, check_files(paths, name, config_dir), deployment)


def ensure_target(name: str, config_dir: Path) -> str:
    """A deployment target for the product in ``<config_dir>/targets.yaml`` unless it has
    one: a gateway of its own (``yieldops run`` starts it on loopback; a deployment gives
    the connection), so a first model can be rolled out to a champion. Says what it did."""
    from .rollout.targets import TARGETS_FILE, load_targets

    path = config_dir / TARGETS_FILE
    before = path.read_text() if path.exists() else "targets:\n"
    if any(t.product == name for t in load_targets(path)):
        return f"{path}: {name} already has a target"
    slug = re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")
    entry = {
        "name": f"{slug.replace('_', '-')}-local",
        "product": name,
        "conn_id": f"yieldops_gateway_{slug}",
    }
    line = f"  - {_flow(entry)}  # added by yieldops product init\n"
    write_text(path, before + ("" if before.endswith("\n") else "\n") + line)
    try:
        load_targets(path)
    except ConfigError as exc:
        write_text(path, before)
        return f"{path}: add a target for {name} by hand ({exc})"
    return f"{path}: target {entry['name']} (gateway connection {entry['conn_id']})"


def _refuse_bad_target(name: str, target: Path, config_dir: Path, force: bool) -> None:
    if not re.match(PRODUCT_NAME, name):
        raise InitRefused(
            f"{name!r} is not a product name: letters, digits, '.', '_' and '-', "
            "starting with a letter or digit"
        )
    if target.exists() and not force:
        raise InitRefused(f"{target} exists: give --force to replace it")
    try:
        others = [
            path
            for path in sorted((config_dir / "products").glob("*.y*ml"))
            if path != target and load_product(path).name == name
        ]
    except ConfigError as exc:  # ingest could not load the products either
        raise InitRefused(f"fix the product YAML first: {exc}") from exc
    if others:
        raise InitRefused(f"product {name!r} is already defined in {others[0]}")


def format_outcome(outcome: InitOutcome) -> str:
    """What was written and each file's verdict, one line per file (failures below it)."""
    config = product_config(outcome.profile)
    rule = ", ".join(f"{k} {v}" for k, v in (config.match.given() if config.match else {}).items())
    wafer = f"wafer radius {config.wafer.radius_dies:g} dies" if config.wafer else "no wafer"
    lines = [
        f"wrote {outcome.path}",
        f"  match {rule}; good bins {config.bins.good}; {len(config.label_tests)} label tests; "
        f"{len(config.validation.physical_bounds)} physical bounds; {wafer}",
        f"  {outcome.target}",
    ]
    for check in outcome.checks:
        lines += _check_lines(check)
    failed = sum(not c.passed for c in outcome.checks)
    lines.append(
        f"{len(outcome.checks) - failed} of {len(outcome.checks)} file(s) pass the suites"
        + (f"; see above, and edit {outcome.path} (--force writes it anew)" if failed else "")
    )
    return "\n".join(lines)


def _check_lines(check: FileCheck) -> list[str]:
    if check.problem is not None:
        return [f"FAIL  {check.path}: {check.problem}"]
    assert check.report is not None
    report = check.report
    if report.success:
        return [
            f"OK    {check.path}: {report.evaluated} expectations passed "
            f"({check.parts} parts, matched as {check.key})"
        ]
    return [
        f"FAIL  {check.path}: {len(report.failures)} of {report.evaluated} expectations failed",
        *(f"      {failure}" for failure in report.failures),
    ]
