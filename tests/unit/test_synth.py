"""The synthetic fab: deterministic lots with visible structure, written as STDF pystdf reads."""

from __future__ import annotations

import bz2
import gzip
import io
import os
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from pystdf.IO import Parser

from yieldops.synth import (
    DEFAULT_PRODUCT,
    PMIC_PRODUCT,
    TESTER_STYLES,
    FunctionalTest,
    Lot,
    MultiPinTest,
    ParametricTest,
    ProductSpec,
    generate_lot,
    lot_to_bytes,
    synthesize,
    write_lot,
)
from yieldops.synth.fab import failing_dies

Record = tuple[str, dict]
RECORD_OF = {ParametricTest: "PTR", MultiPinTest: "MPR", FunctionalTest: "FTR"}


class _Collector:
    """pystdf sink keeping every record as (TYPE, {field: value})."""

    def __init__(self) -> None:
        self.records: list[Record] = []

    def after_send(self, ds, data) -> None:
        record_type, fields = data
        name = type(record_type).__name__.upper()
        self.records.append((name, dict(zip(record_type.fieldNames, fields))))

    def before_begin(self, ds) -> None: ...
    def after_begin(self, ds) -> None: ...
    def before_send(self, ds, data) -> None: ...
    def before_complete(self, ds) -> None: ...
    def after_complete(self, ds) -> None: ...
    def before_cancel(self, ds, exc=None) -> None: ...
    def after_cancel(self, ds, exc=None) -> None: ...


def parse(data: bytes) -> list[Record]:
    parser = Parser(inp=io.BytesIO(data))
    sink = _Collector()
    parser.addSink(sink)
    parser.parse()
    return sink.records


def read_file(path: Path) -> bytes:
    data = path.read_bytes()
    if path.name.endswith(".gz"):
        return gzip.decompress(data)
    if path.name.endswith(".bz2"):
        return bz2.decompress(data)
    return data


def of_type(records: list[Record], name: str) -> list[dict]:
    return [fields for record, fields in records if record == name]


def concat(lot: Lot, column: str) -> np.ndarray:
    return np.concatenate([getattr(w, column) for w in lot.wafers])


def results(lot: Lot, test_num: int) -> np.ndarray:
    return np.concatenate([w.results[test_num] for w in lot.wafers])


@pytest.fixture(scope="module")
def adc_lot() -> Lot:
    return generate_lot(DEFAULT_PRODUCT, lot_index=0, seed=11, wafers=2)


@pytest.fixture(scope="module")
def adc_records(adc_lot: Lot) -> list[Record]:
    return parse(lot_to_bytes(adc_lot))


@pytest.fixture(scope="module")
def pmic_lot() -> Lot:
    return generate_lot(PMIC_PRODUCT, lot_index=1, seed=5, wafers=1)


@pytest.fixture(scope="module")
def pmic_records(pmic_lot: Lot) -> list[Record]:
    return parse(lot_to_bytes(pmic_lot, byte_order=">"))


# Determinism


def test_same_seed_gives_identical_files_and_another_seed_does_not(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def make(folder: str, seed: int) -> bytes:
        (path,) = synthesize(
            tmp_path / folder, lots=1, wafers_per_lot=1, seed=seed, compression="gz"
        )
        return path.read_bytes()

    first = make("a", seed=3)
    monkeypatch.setattr(time, "time", lambda: 2_000_000_000.0)  # a run on another day
    assert make("b", seed=3) == first
    assert make("c", seed=4) != first


def test_a_lot_does_not_depend_on_the_lots_generated_before_it() -> None:
    alone = generate_lot(DEFAULT_PRODUCT, lot_index=2, seed=9, wafers=1)
    generate_lot(DEFAULT_PRODUCT, lot_index=0, seed=9, wafers=1)
    again = generate_lot(DEFAULT_PRODUCT, lot_index=2, seed=9, wafers=1)
    assert lot_to_bytes(alone) == lot_to_bytes(again)


# File structure, read back with pystdf as the oracle


def test_file_has_the_tester_record_sequence_and_counts(adc_lot: Lot, adc_records) -> None:
    names = [name for name, _ in adc_records]
    assert names[:4] == ["FAR", "ATR", "MIR", "SDR"]
    assert names[-1] == "MRR"
    counts = Counter(names)
    dies = adc_lot.n_dies
    assert dies == sum(w.n_dies for w in adc_lot.wafers) == 2 * adc_lot.wafers[0].n_dies
    assert counts["PIR"] == counts["PRR"] == dies
    assert counts["WIR"] == counts["WRR"] == 2
    assert counts["MIR"] == counts["MRR"] == counts["WCR"] == counts["SDR"] == 1
    assert counts["MPR"] == dies  # one continuity test
    assert counts["FTR"] == 2 * dies
    assert counts["PTR"] == 14 * dies  # full datalog: every parametric test on every die
    assert counts["TSR"] == len(DEFAULT_PRODUCT.tests)
    assert counts["HBR"] == len(DEFAULT_PRODUCT.hard_bins)
    assert counts["SBR"] == len(DEFAULT_PRODUCT.soft_bins)
    assert counts["PCR"] == DEFAULT_PRODUCT.n_sites + 1


def test_lot_and_wafer_headers(adc_lot: Lot, adc_records) -> None:
    (mir,) = of_type(adc_records, "MIR")
    assert mir["LOT_ID"] == adc_lot.lot_id
    assert mir["PART_TYP"] == "YO-7NM-ADC"
    assert mir["NODE_NAM"] == adc_lot.tester
    assert mir["PROC_ID"] == "N7"
    assert mir["FACIL_ID"] and mir["FLOOR_ID"] and mir["TSTR_TYP"] and mir["JOB_NAM"]
    assert mir["SETUP_T"] < mir["START_T"] < of_type(adc_records, "MRR")[0]["FINISH_T"]
    (sdr,) = of_type(adc_records, "SDR")
    assert (sdr["SITE_CNT"], sdr["SITE_NUM"]) == (4, [0, 1, 2, 3])
    (wcr,) = of_type(adc_records, "WCR")
    assert (wcr["WAFR_SIZ"], wcr["DIE_WID"], wcr["WF_UNITS"]) == (300.0, 7.5, 3)
    assert (wcr["CENTER_X"], wcr["CENTER_Y"], wcr["POS_X"], wcr["POS_Y"]) == (0, 0, "R", "U")
    wirs, wrrs = of_type(adc_records, "WIR"), of_type(adc_records, "WRR")
    for wafer, wir, wrr in zip(adc_lot.wafers, wirs, wrrs):
        assert wir["WAFER_ID"] == wrr["WAFER_ID"] == wafer.wafer_id
        assert wir["START_T"] < wrr["FINISH_T"]
        assert wrr["PART_CNT"] == wafer.n_dies
        assert wrr["GOOD_CNT"] == int(wafer.good.sum())


def test_parts_decode_to_the_generated_dies(adc_lot: Lot, adc_records) -> None:
    prrs = of_type(adc_records, "PRR")
    column = {name: np.array([p[name] for p in prrs]) for name in prrs[0]}
    assert (column["HEAD_NUM"] == 1).all()
    np.testing.assert_array_equal(column["SITE_NUM"], concat(adc_lot, "site"))
    np.testing.assert_array_equal(column["X_COORD"], concat(adc_lot, "x"))
    np.testing.assert_array_equal(column["Y_COORD"], concat(adc_lot, "y"))
    np.testing.assert_array_equal(column["HARD_BIN"], concat(adc_lot, "hard_bin"))
    np.testing.assert_array_equal(column["SOFT_BIN"], concat(adc_lot, "soft_bin"))
    np.testing.assert_array_equal(column["TEST_T"], concat(adc_lot, "test_time_ms"))
    np.testing.assert_array_equal(column["PART_FLG"] == 0x08, ~concat(adc_lot, "good"))
    assert column["PART_ID"].tolist() == [str(i) for i in range(1, adc_lot.n_dies + 1)]


def test_touchdowns_write_pirs_then_site_interleaved_tests_then_prrs(
    adc_lot: Lot, adc_records
) -> None:
    tests = [t.test_num for t in DEFAULT_PRODUCT.tests]
    body = [(n, f) for n, f in adc_records if n in {"PIR", "PTR", "MPR", "FTR", "PRR"}]
    touchdowns = 0
    i = 0
    while i < len(body):
        pir_sites = []
        while body[i][0] == "PIR":
            pir_sites.append(body[i][1]["SITE_NUM"])
            i += 1
        assert 1 <= len(pir_sites) <= 4 and pir_sites == sorted(set(pir_sites))
        expected = [(t, s) for t in tests for s in pir_sites]
        got = [(f["TEST_NUM"], f["SITE_NUM"]) for _, f in body[i : i + len(expected)]]
        assert got == expected
        i += len(expected)
        assert [f["SITE_NUM"] for _, f in body[i : i + len(pir_sites)]] == pir_sites
        assert {n for n, _ in body[i : i + len(pir_sites)]} == {"PRR"}
        i += len(pir_sites)
        touchdowns += 1
    assert touchdowns == sum(int(w.touchdown.max()) + 1 for w in adc_lot.wafers)


def test_only_the_first_record_of_a_test_describes_it(adc_records) -> None:
    seen: set[int] = set()
    for name, fields in adc_records:
        if name not in {"PTR", "MPR", "FTR"}:
            continue
        first = fields["TEST_NUM"] not in seen
        seen.add(fields["TEST_NUM"])
        test = DEFAULT_PRODUCT.test(fields["TEST_NUM"])
        if not first:
            assert fields["TEST_TXT"] is None
            continue
        assert fields["TEST_TXT"] == test.name
        if name != "FTR":
            assert np.float32(fields["LO_LIMIT"]) == np.float32(test.lo_limit)
            assert np.float32(fields["HI_LIMIT"]) == np.float32(test.hi_limit)
            assert fields["UNITS"] == test.units
    assert seen == {t.test_num for t in DEFAULT_PRODUCT.tests}


def test_results_and_fail_flags_match_the_lot(adc_lot: Lot, adc_records) -> None:
    for test in DEFAULT_PRODUCT.tests:
        kind = RECORD_OF[type(test)]
        records = [f for f in of_type(adc_records, kind) if f["TEST_NUM"] == test.test_num]
        expected = results(adc_lot, test.test_num)
        failing = failing_dies(test, expected)
        flags = np.array([r["TEST_FLG"] for r in records])
        np.testing.assert_array_equal(flags == 0x80, failing)
        assert set(flags) <= {0, 0x80}
        if kind == "PTR":
            np.testing.assert_array_equal(
                np.array([r["RESULT"] for r in records], dtype=np.float32), expected
            )
        if kind == "MPR":
            readings = np.array([r["RTN_RSLT"] for r in records], dtype=np.float32)
            np.testing.assert_array_equal(readings, expected)
            assert records[0]["RTN_INDX"] == list(range(1, len(test.pins) + 1))
            assert all(r["RTN_INDX"] is None for r in records[1:])
            # pystdf hands N1 arrays back as packed bytes, first state in the low nibble
            states = np.array([[b >> s & 0xF for b in r["RTN_STAT"] for s in (0, 4)]
                               for r in records])  # fmt: skip
            lo, hi = test.limits32()
            np.testing.assert_array_equal(states != 0, (expected < lo) | (expected > hi))


def test_pins_named_by_pmrs_cover_the_mpr_indexes(adc_records) -> None:
    pmrs = of_type(adc_records, "PMR")
    mpr = of_type(adc_records, "MPR")[0]
    assert {p["PMR_INDX"] for p in pmrs} == set(mpr["RTN_INDX"])
    assert {p["SITE_NUM"] for p in pmrs} == {0, 1, 2, 3}


def test_summaries_agree_with_the_parts(adc_records) -> None:
    prrs = of_type(adc_records, "PRR")
    hard = Counter(p["HARD_BIN"] for p in prrs)
    soft = Counter(p["SOFT_BIN"] for p in prrs)
    assert {
        h["HBIN_NUM"]: h["HBIN_CNT"] for h in of_type(adc_records, "HBR") if h["HBIN_CNT"]
    } == hard
    assert {
        s["SBIN_NUM"]: s["SBIN_CNT"] for s in of_type(adc_records, "SBR") if s["SBIN_CNT"]
    } == soft
    assert {h["HBIN_NUM"] for h in of_type(adc_records, "HBR") if h["HBIN_PF"] == "P"} == {1}
    pcrs = {(p["HEAD_NUM"], p["SITE_NUM"]): p for p in of_type(adc_records, "PCR")}
    assert pcrs[255, 255]["PART_CNT"] == len(prrs)
    assert pcrs[255, 255]["GOOD_CNT"] == hard[1]
    assert sum(pcrs[1, s]["PART_CNT"] for s in range(4)) == len(prrs)
    for tsr in of_type(adc_records, "TSR"):
        kind = {"P": "PTR", "M": "MPR", "F": "FTR"}[tsr["TEST_TYP"]]
        runs = [f for f in of_type(adc_records, kind) if f["TEST_NUM"] == tsr["TEST_NUM"]]
        assert tsr["EXEC_CNT"] == len(runs)
        assert tsr["FAIL_CNT"] == sum(f["TEST_FLG"] == 0x80 for f in runs)
        assert (tsr["HEAD_NUM"], tsr["SITE_NUM"]) == (255, 255)


def test_stop_on_fail_leaves_out_the_tests_after_the_first_binning_failure(
    pmic_lot: Lot, pmic_records
) -> None:
    assert of_type(pmic_records, "FAR")[0]["CPU_TYPE"] == 1  # big-endian
    assert of_type(pmic_records, "SDR")[0]["SITE_CNT"] == 8
    prrs = of_type(pmic_records, "PRR")
    num_test = np.array([p["NUM_TEST"] for p in prrs])
    np.testing.assert_array_equal(num_test, pmic_lot.wafers[0].num_tests)
    test_records = sum(name in {"PTR", "MPR", "FTR"} for name, _ in pmic_records)
    assert num_test.sum() == test_records
    failed = np.array([p["PART_FLG"] == 0x08 for p in prrs])
    assert failed.any() and (num_test[failed] < len(PMIC_PRODUCT.tests)).all()
    assert (num_test[~failed] == len(PMIC_PRODUCT.tests)).all()
    exec_counts = {t["TEST_NUM"]: t["EXEC_CNT"] for t in of_type(pmic_records, "TSR")}
    assert exec_counts[100] == len(prrs) > exec_counts[4003]


# Byte orders and compression


def test_byte_orders_and_compression_decode_to_the_same_records(
    tmp_path: Path, pmic_lot: Lot, pmic_records
) -> None:
    decoded = {}
    for name, order in [("a.stdf", "<"), ("b.stdf.gz", ">"), ("c.stdf.bz2", "<")]:
        path = write_lot(pmic_lot, tmp_path / name, byte_order=order)
        decoded[name] = parse(read_file(path))
    assert gzip.decompress((tmp_path / "b.stdf.gz").read_bytes()) == lot_to_bytes(pmic_lot, ">")
    assert of_type(decoded["a.stdf"], "FAR")[0]["CPU_TYPE"] == 2
    for records in decoded.values():
        assert records[1:] == pmic_records[1:]  # all but the FAR's CPU_TYPE


def test_synthesize_names_files_by_product_and_lot_and_leaves_no_temp_files(
    tmp_path: Path,
) -> None:
    paths = synthesize(
        tmp_path / "landing", lots=2, wafers_per_lot=1, seed=1, product=PMIC_PRODUCT,
        compression="bz2", first_lot=4,
    )  # fmt: skip
    assert [p.name for p in paths] == [
        "YO-28NM-PMIC_S1-L005.stdf.bz2",
        "YO-28NM-PMIC_S1-L006.stdf.bz2",
    ]
    assert sorted(os.listdir(tmp_path / "landing")) == [p.name for p in paths]
    assert all(p.stat().st_mode & 0o444 == 0o444 for p in paths)
    mir = of_type(parse(read_file(paths[1])), "MIR")[0]
    assert mir["LOT_ID"] == "S1-L006"
    with pytest.raises(ValueError, match="compression"):
        synthesize(tmp_path, compression="zip")


def test_a_failed_write_keeps_the_old_file_and_cleans_up(
    tmp_path: Path, pmic_lot: Lot, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "lot.stdf"
    target.write_bytes(b"old")

    def refuse(*args: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", refuse)
    with pytest.raises(OSError, match="disk full"):
        write_lot(pmic_lot, target)
    assert target.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["lot.stdf"]


# Structure a model can learn and a person can see


def test_wafer_is_round_and_a_touchdown_is_a_2x2_block(adc_lot: Lot) -> None:
    wafer = adc_lot.wafers[0]
    radius = DEFAULT_PRODUCT.dies_across / 2
    corner = np.hypot(np.abs(wafer.x) + 0.5, np.abs(wafer.y) + 0.5)
    assert (corner <= radius).all()
    assert 1000 <= wafer.n_dies <= 1500
    assert abs(wafer.n_dies - np.pi * radius**2) < 0.1 * np.pi * radius**2
    assert len(set(zip(wafer.x.tolist(), wafer.y.tolist()))) == wafer.n_dies
    assert set(wafer.site.tolist()) == {0, 1, 2, 3}
    for td in range(int(wafer.touchdown.max()) + 1):
        members = wafer.touchdown == td
        assert len(set(wafer.site[members].tolist())) == members.sum()
        assert np.ptp(wafer.x[members]) <= 1 and np.ptp(wafer.y[members]) <= 1


def test_edge_dies_fail_more_than_centre_dies() -> None:
    lot = generate_lot(DEFAULT_PRODUCT, lot_index=0, seed=2, wafers=4)
    radius = np.hypot(concat(lot, "x"), concat(lot, "y")) / (DEFAULT_PRODUCT.dies_across / 2)
    failed = ~concat(lot, "good")
    leakage = concat(lot, "hard_bin") == 3
    edge, centre = radius > 0.85, radius < 0.6
    assert failed[edge].mean() > 2 * failed[centre].mean()
    assert leakage[edge].mean() > 10 * leakage[centre].mean()


def test_later_lots_drift_and_lose_yield() -> None:
    first = generate_lot(DEFAULT_PRODUCT, lot_index=0, seed=4, wafers=2, drift=1.0)
    later = generate_lot(DEFAULT_PRODUCT, lot_index=3, seed=4, wafers=2, drift=1.0)
    offset = DEFAULT_PRODUCT.test(4000)  # ADC_OFFSET follows the process latent one to one
    shift = results(later, 4000).mean() - results(first, 4000).mean()
    assert shift == pytest.approx(3 * 1.0 * offset.sigma, rel=0.15)
    assert later.yield_fraction < first.yield_fraction - 0.1
    parametric_bin = 4
    assert (concat(later, "hard_bin") == parametric_bin).mean() > 5 * max(
        (concat(first, "hard_bin") == parametric_bin).mean(), 0.001
    )
    # the cheap RO_FREQ monitor sees the drift too, so a model can anticipate it
    assert results(later, 1003).mean() < results(first, 1003).mean() - 2 * 9.0


def test_failures_show_in_leakage_and_the_cheap_monitor(adc_lot: Lot) -> None:
    failed = ~concat(adc_lot, "good")
    functional = concat(adc_lot, "hard_bin") == 2
    assert results(adc_lot, 2000)[failed].mean() > 1.5 * results(adc_lot, 2000)[~failed].mean()
    iddq_pre = results(adc_lot, 1001)  # monitor, not label-defining
    assert iddq_pre[functional].mean() > 1.1 * iddq_pre[~failed].mean()
    assert (
        concat(adc_lot, "defectivity")[functional].mean()
        > 3 * concat(adc_lot, "defectivity")[~failed].mean()
    )


def test_the_first_failing_label_test_decides_the_bin(adc_lot: Lot) -> None:
    product = DEFAULT_PRODUCT
    assert product.label_defining_tests == {100, 2000, 2001, 3000, 3001, *range(4000, 4005)}
    monitors = {t.test_num for t in product.tests} - product.label_defining_tests
    assert monitors == {1000, 1001, 1002, 1003, 1004, 1005, 1006}
    for wafer in adc_lot.wafers:
        for die in range(wafer.n_dies):
            first_fail = next(
                (t for t in product.label_tests
                 if failing_dies(t, wafer.results[t.test_num][die : die + 1])[0]),
                None,
            )  # fmt: skip
            expected = (1, 1) if first_fail is None else (first_fail.hard_bin, first_fail.soft_bin)
            assert (wafer.hard_bin[die], wafer.soft_bin[die]) == expected


def test_the_default_batch_is_three_lots_of_two_wafers(tmp_path: Path) -> None:
    """What `yieldops synth` lands when given no sizes (its speed: benchmarks/bench_synth.py)."""
    from yieldops.stdf import read_tables

    tables = [read_tables(path) for path in synthesize(tmp_path, seed=0)]
    assert [t["lots"]["lot_id"].to_pylist() for t in tables] == [
        ["S0-L001"], ["S0-L002"], ["S0-L003"],
    ]  # fmt: skip
    assert [t["wafers"].num_rows for t in tables] == [2, 2, 2]


# Retests, multi-pin signal and test identity (used by the tester styles)


def test_retests_probe_the_failing_dies_again_after_an_unchanged_first_pass() -> None:
    product = TESTER_STYLES["inhouse"].product
    plain = generate_lot(product, lot_index=0, seed=6, wafers=2)
    lot = generate_lot(product, lot_index=0, seed=6, wafers=2, retest_failures=True)
    first, again = lot.wafers[0], lot.wafers[0].retests
    assert plain.wafers[0].retests is None and again is not None
    for column in ("x", "y", "hard_bin", "good", "part_id", "defectivity"):
        np.testing.assert_array_equal(getattr(first, column), getattr(plain.wafers[0], column))
    failing = ~first.good
    for column in ("x", "y", "site", "edge", "defectivity", "process"):
        np.testing.assert_array_equal(getattr(again, column), getattr(first, column)[failing])
    assert first.n_parts == first.n_dies + int(failing.sum())
    assert again.touchdown.tolist() == list(range(again.n_dies))  # one die at a time
    assert again.start_t == first.finish_t < again.finish_t == first.end_t
    part_ids = np.concatenate([d.part_id for w in lot.wafers for d in w.with_retests()])
    assert part_ids.tolist() == list(range(1, len(part_ids) + 1))
    assert lot.wafers[1].start_t > first.end_t
    # contact faults mostly pass the second time; leakage at the rim keeps failing
    contact, leakage = first.hard_bin[failing] == 5, first.hard_bin[failing] == 3
    assert again.good[contact].mean() > 0.6
    assert again.good[leakage].mean() < 0.4


def test_multi_pin_readings_follow_the_latent_causes_pin_by_pin() -> None:
    product = TESTER_STYLES["smartest"].product
    lot = generate_lot(product, lot_index=0, seed=2, wafers=2)
    leakage = next(t for t in product.tests if t.name.startswith("leakage_IIL"))
    readings = results(lot, leakage.test_num)
    assert readings.shape == (lot.n_dies, len(leakage.pins))
    edge = concat(lot, "edge")
    assert (readings[edge > 0.5].mean(axis=0) > 3 * readings[edge == 0].mean(axis=0)).all()
    # the pins of one die share its shift: they agree far more than two dies do
    logs = np.log(readings)
    assert np.corrcoef(logs[:, 0], logs[:, 1])[0, 1] > 0.3


def test_a_test_is_its_record_number_and_name() -> None:
    rft = TESTER_STYLES["smartest"].product
    assert rft.reuses_test_numbers and not DEFAULT_PRODUCT.reuses_test_numbers
    vopp = [t for t in rft.tests if t.file_num == 3251]
    assert [t.test_id for t in vopp] == [
        "3251_MGC1_Vopp_CH1_Vopp_RF_OUT1P_1",
        "3251_MGC1_Vopp_CH1_Vopp_RF_OUT1N_1",
    ]
    assert DEFAULT_PRODUCT.test(1003).test_id == "1003_RO_FREQ"
    twin = ParametricTest(
        test_num=5, stdf_num=1003, name="RO_FREQ", units="MHz", lo_limit=0.0, hi_limit=1.0,
        mean=0.5, sigma=0.1,
    )  # fmt: skip
    with pytest.raises(ValueError, match=r"tests \['1003_RO_FREQ'\] would be one test"):
        ProductSpec(
            name="X", process_id="P", hard_bins=DEFAULT_PRODUCT.hard_bins,
            tests=(DEFAULT_PRODUCT.test(1003), twin),
        )  # fmt: skip
