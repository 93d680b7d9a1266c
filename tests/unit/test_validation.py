"""Validation of decoded STDF files with Great Expectations: real suites on real synthetic files."""

from __future__ import annotations

import multiprocessing
import re
from pathlib import Path

import great_expectations.expectations as gxe
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from yieldops.config import product
from yieldops.stdf import read_tables
from yieldops.synth import PRODUCTS, generate_lot, write_lot
from yieldops.validation import ValidationReport, expectation_suites, validate_tables
from yieldops.validation.frames import measurements, validation_frames

Tables = dict[str, pa.Table]
ADC = product("YO-7NM-ADC")

# The frames a file is validated as: lots, parts, tests, results, measurements (a row per
# measurement: its bounds and missing rate beside what the file shows).
FRAMES = 5


@pytest.fixture(scope="module")
def adc(tmp_path_factory: pytest.TempPathFactory) -> Tables:
    lot = generate_lot(PRODUCTS["YO-7NM-ADC"], lot_index=0, seed=0, wafers=1)
    return read_tables(write_lot(lot, tmp_path_factory.mktemp("adc") / "adc.stdf"))


def column(tables: Tables, table: str, name: str) -> pd.Series:
    """A column as a writable Series (to_pandas may share Arrow's read-only buffers)."""
    return tables[table][name].to_pandas().copy()


def replaced(tables: Tables, table: str, name: str, values: pd.Series) -> Tables:
    """The tables with the values of one column replaced."""
    field = tables[table].schema.field(name)
    array = pa.array(values, type=field.type, from_pandas=True)
    index = tables[table].schema.get_field_index(name)
    return edited(tables, table, tables[table].set_column(index, field, array))


def edited(tables: Tables, table: str, edit: pa.Table) -> Tables:
    return {**tables, table: edit}


def only_failure(report: ValidationReport) -> str:
    assert not report.success
    assert len(report.failures) == 1, report.failures
    return report.failures[0]


def test_good_file_passes(adc: Tables) -> None:
    report = validate_tables(adc, ADC)
    assert report.success, report.failures
    assert report.failures == []
    assert report.evaluated > 20
    assert report.evaluated == sum(
        len(suite.expectations) for suite in expectation_suites(ADC).values()
    )
    assert report.docs_page is None


def test_tests_skipped_by_stop_on_fail_are_not_missing(tmp_path: Path) -> None:
    """The PMIC flow skips the rest of the flow on a failing die: only good dies must have all."""
    lot = generate_lot(PRODUCTS["YO-28NM-PMIC"], lot_index=0, seed=3, wafers=1)
    tables = read_tables(write_lot(lot, tmp_path / "pmic.stdf"))
    pmic = product("YO-28NM-PMIC")
    strict = pmic.model_copy(
        update={"validation": pmic.validation.model_copy(update={"max_missing_rate": 0.01})}
    )
    last_test = tables["results"].filter(pc.equal(tables["results"]["test_num"], 4003))
    assert last_test.num_rows < 0.95 * tables["parts"].num_rows  # skipped on over 5 % of dies

    report = validate_tables(tables, strict)

    assert report.success, report.failures


def test_hard_bin_outside_declared_set(adc: Tables) -> None:
    hard_bin = column(adc, "parts", "hard_bin")
    hard_bin[:3] = 9

    line = only_failure(validate_tables(replaced(adc, "parts", "hard_bin", hard_bin), ADC))

    assert line.startswith("parts.hard_bin: expect_column_values_to_be_in_set")
    assert "3 of 1185" in line and "[9, 9, 9]" in line


def test_die_outside_wafer(adc: Tables) -> None:
    x = column(adc, "parts", "x")
    x[0] = 30

    line = only_failure(validate_tables(replaced(adc, "parts", "x", x), ADC))

    assert line.startswith("parts.radius: expect_column_values_to_be_between")
    assert "max_value=20.5" in line


@pytest.mark.parametrize(
    ("test_num", "pin", "value", "bound", "named"),
    [
        (1000, None, 5000.0, "upper", "1000_CONTACT_RES (CONTACT_RES) high=1000.0 max=5000.0"),
        (
            100,
            3,
            -2.0e6,
            "lower",
            "100_CONT_SIGNAL_PINS.pin3 (CONT_SIGNAL_PINS) min=-2000000.0 low=-1000000.0",
        ),
    ],
)  # configured bounds, then the default ones
def test_result_beyond_physical_bounds(
    adc: Tables, test_num: int, pin: int | None, value: float, bound: str, named: str
) -> None:
    results = adc["results"]
    rows = pc.equal(results["test_num"], test_num)
    if pin is not None:
        rows = pc.and_(rows, pc.equal(results["pin"], pin))
    result = column(adc, "results", "result")
    result[pc.indices_nonzero(rows)[0].as_py()] = value

    report = validate_tables(replaced(adc, "results", "result", result), ADC)

    line = only_failure(report)
    rule = "largest result at or below" if bound == "upper" else "smallest result at or above"
    assert line.startswith(f"measurements ({rule} the test's {bound} physical bound)"), line
    assert "expect_column_pair_values_a_to_be_greater_than_b: observed 1 of" in line
    assert f"e.g. {named}" in line


def test_yield_far_below_range(adc: Tables) -> None:
    hard_bin = column(adc, "parts", "hard_bin")
    hard_bin[: int(len(hard_bin) * 0.95)] = 3

    report = validate_tables(replaced(adc, "parts", "hard_bin", hard_bin), ADC)

    line = only_failure(report)
    assert line.startswith("parts.good: expect_column_mean_to_be_between")
    observed = float(re.search(r"observed ([\d.]+)", line).group(1))
    assert observed < 0.1
    assert "min_value=0.3" in line


def test_test_mostly_missing(adc: Tables) -> None:
    results = adc["results"]
    dropped = pc.and_(
        pc.equal(results["test_num"], 1003),
        pc.not_equal(pc.bit_wise_and(results["part_index"], 7), 0),
    )

    report = validate_tables(edited(adc, "results", results.filter(pc.invert(dropped))), ADC)

    line = only_failure(report)
    assert line.startswith("measurements (share of good dies without a result)")
    assert "observed 1 of" in line
    assert re.search(
        r"e\.g\. 1003_RO_FREQ \(RO_FREQ\) allowed_missing_rate=0\.05 missing_rate=0\.8", line
    )


def test_a_file_without_results_fails_its_missing_rates(adc: Tables) -> None:
    results = adc["results"].slice(0, 0)

    report = validate_tables(edited(adc, "results", results), ADC)

    assert not report.success
    (line,) = report.failures
    assert line.startswith("measurements (share of good dies without a result)")
    measured = len(measurements(adc["tests"]))
    assert f"observed {measured} of {measured} (100%) unexpected" in line


def test_missing_column(adc: Tables) -> None:
    parts = adc["parts"].drop_columns(["soft_bin"])

    line = only_failure(validate_tables(edited(adc, "parts", parts), ADC))

    assert line == "parts: expect_table_columns_to_match_set: observed missing columns ['soft_bin']"


def test_missing_key_column_fails_its_rules_without_crashing(adc: Tables) -> None:
    parts = adc["parts"].drop_columns(["hard_bin"])

    report = validate_tables(edited(adc, "parts", parts), ADC)

    assert not report.success
    assert "parts: expect_table_columns_to_match_set: observed missing columns ['hard_bin']" in (
        report.failures
    )
    assert any(
        line.startswith("parts.hard_bin: expect_column_values_to_be_in_set")
        for line in report.failures
    )


def test_null_part_keys(adc: Tables) -> None:
    part_index = column(adc, "parts", "part_index").astype("Int32")
    part_index[:4] = None

    report = validate_tables(replaced(adc, "parts", "part_index", part_index), ADC)

    line = only_failure(report)
    assert line.startswith(
        "parts.part_index: expect_column_values_to_not_be_null: observed 4 of 1185"
    )


def test_null_result_keys(adc: Tables) -> None:
    part_index = column(adc, "results", "part_index").astype("Int32")
    part_index[:2] = None

    report = validate_tables(replaced(adc, "results", "part_index", part_index), ADC)

    line = only_failure(report)
    assert line.startswith("results.part_index: expect_column_values_to_not_be_null: observed 2 of")


def test_suites_and_frames_follow_product_config(adc: Tables) -> None:
    suites = expectation_suites(ADC)
    frames = validation_frames(adc, ADC)

    assert set(suites) == set(frames) == {"lots", "parts", "tests", "results", "measurements"}
    rows = frames["measurements"].set_index("measurement")
    measured = measurements(adc["tests"])
    assert list(rows.index) == [m.column for m in measured]  # every measurement the file has
    assert tuple(rows.loc["1000_CONTACT_RES", ["low", "high"]]) == (0, 1000)  # physical_bounds
    assert tuple(rows.loc["4004_ADC_SNR", ["low", "high"]]) == (-1e6, 1e6)  # default_bounds
    assert rows.loc["3000_FUNC_SCAN", ["low", "high"]].isna().all()  # functional: pass/fail
    assert (rows["allowed_missing_rate"] == 0.05).all()
    results = rows.loc["1000_CONTACT_RES"]
    values = adc["results"].filter(pc.equal(adc["results"]["test_num"], 1000))["result"]
    assert (results["min"], results["max"]) == (pc.min(values).as_py(), pc.max(values).as_py())
    assert results["results"] == len(values) and results["below"] == results["above"] == 0
    (bins,) = (
        e for e in suites["parts"].expectations if isinstance(e, gxe.ExpectColumnValuesToBeInSet)
    )
    assert (bins.column, set(bins.value_set)) == ("hard_bin", {1, 2, 3, 4, 5, 6})


def test_data_docs_page_of_the_run(adc: Tables, tmp_path: Path) -> None:
    report = validate_tables(adc, ADC, docs_dir=tmp_path / "docs", run_name="lot one/file.stdf")

    page = report.docs_page
    assert page is not None and page.is_file() and page.is_relative_to(tmp_path / "docs")
    text = page.read_text()
    assert "lot_one_file.stdf" in text
    links = re.findall(r'<a href="([^"]+)"', text)
    assert len(links) == FRAMES  # one GX page per validated frame
    for link in links:
        gx_page = (page.parent / link).resolve()
        assert gx_page.is_file()
        assert "lot_one_file.stdf" in gx_page.read_text()
    assert (tmp_path / "docs" / "index.html").is_file()


# What a page makes the browser load: scripts, stylesheets, images, and in CSS fonts
_LOADED = re.compile(
    r'<script[^>]*\ssrc="([^"]+)"'
    r'|<link rel="stylesheet"[^>]*\shref="([^"]+)"'
    r'|<img[^>]*\ssrc="([^"]+)"'
    r"""|url\(\s*['"]?([^'")]+)"""
)


def _loaded(file: Path) -> set[Path]:
    """Every file ``file`` (an HTML page or a stylesheet) loads, and what those load;
    fails on anything it would fetch from elsewhere."""
    found = set()
    for match in _LOADED.finditer(file.read_text(encoding="utf-8")):
        reference = next(group for group in match.groups() if group).split("?")[0]
        if reference.startswith("data:"):
            continue
        assert not re.match(r"([a-z]+:)?//", reference), f"{file} loads {reference}"
        loaded = (file.parent / reference).resolve()
        assert loaded.is_file(), f"{file} loads {reference}: not in the site"
        found.add(loaded)
        if loaded.suffix == ".css":
            found |= _loaded(loaded)
    return found


def test_data_docs_need_no_internet_and_name_the_file_and_lot(adc: Tables, tmp_path: Path):
    docs = tmp_path / "docs"
    report = validate_tables(adc, ADC, docs_dir=docs, stdf_file="tester-1/adc.stdf")

    gx_pages = sorted((docs / "validations").rglob("*.html"))
    assert report.docs_page is not None and len(gx_pages) == FRAMES
    loaded = set()
    for page in (report.docs_page, docs / "index.html", *gx_pages):
        loaded |= _loaded(page)
        assert "tester-1/adc.stdf (lot S0-L001)" in page.read_text(encoding="utf-8"), page
    vendor = docs / "static" / "vendor"
    names = {path.relative_to(vendor).as_posix() for path in loaded if path.is_relative_to(vendor)}
    assert {
        "jquery/jquery.min.js",
        "bootstrap/css/bootstrap.min.css",
        "bootstrap-table/bootstrap-table.min.js",  # the index's list of results
        "fontawesome/css/all.min.css",  # the pass/fail icons ...
        "fontawesome/webfonts/fa-solid-900.woff2",  # ... and their font
        "vega/vega.min.js",
    } <= names
    # a second run adds its pages, and our assets are not copied again
    ours = {path: path.stat().st_mtime_ns for path in loaded if path.is_relative_to(vendor)}
    validate_tables(adc, ADC, docs_dir=docs, stdf_file="tester-1/adc-again.stdf")
    assert {path: path.stat().st_mtime_ns for path in ours} == ours
    assert "tester-1/adc-again.stdf (lot S0-L001)" in (docs / "index.html").read_text()


def test_data_docs_keep_every_run(adc: Tables, tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    first = validate_tables(adc, ADC, docs_dir=docs, run_name="same")
    second = validate_tables(adc, ADC, docs_dir=docs, run_name="same")

    assert first.docs_page != second.docs_page
    assert first.docs_page.is_file() and second.docs_page.is_file()
    assert len(list((docs / "validations").rglob("*.html"))) == 2 * FRAMES
    index = (docs / "index.html").read_text()
    for run in (first, second):
        run_time = run.docs_page.stem
        assert index.count(f"/same/{run_time}/") == FRAMES


def _validate_into(docs: Path, tables: Tables, run_name: str) -> None:
    validate_tables(tables, ADC, docs_dir=docs, run_name=run_name)


def test_data_docs_from_concurrent_processes(adc: Tables, tmp_path: Path) -> None:
    """Airflow runs each task in its own process, several at once, into the same site."""
    docs = tmp_path / "docs"
    # Not "fork": this process runs threads (tqdm's monitor). The fork server imports
    # Great Expectations once for all the workers.
    processes = multiprocessing.get_context("forkserver")
    processes.set_forkserver_preload(["yieldops.validation"])
    workers = [
        processes.Process(target=_validate_into, args=(docs, adc, f"file{i}")) for i in range(3)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)
        assert worker.exitcode == 0

    index = (docs / "index.html").read_text()
    for i in range(3):
        assert len(list((docs / "runs" / f"file{i}").glob("*.html"))) == 1
        assert len(list((docs / "validations").glob(f"*/*/file{i}/*/*.html"))) == FRAMES
        assert index.count(f"/file{i}/") == FRAMES
