"""yieldops product init: real tester files and synthetic lots profiled into a product YAML
that loads, takes its files through product matching and passes its own suites."""

from __future__ import annotations

import re
from pathlib import Path

import pyarrow.compute as pc
import pytest
from tests.conftest import sample_files, sample_params

from yieldops.cli import EXIT_BAD_INPUT, EXIT_OK, EXIT_USAGE, main
from yieldops.config import load_product
from yieldops.curated.identity import make_test_id
from yieldops.product_init import (
    InitOutcome,
    InitRefused,
    init_product,
    landing_key,
    literal,
    match_rule,
    physical_bounds,
    product_config,
)
from yieldops.product_match import FileFacts, match_product
from yieldops.stdf import read_records, read_tables
from yieldops.synth import PRODUCTS, ParametricTest, synthesize

A530 = "lot2_A530_wafer.stdf"
SMARTEST = "ayad_ws_93k_wafer.stdf"
FINAL_TEST = ("rabbi_IntegraFlex_4site.stdf", "sn269_m40c_FusionCX.stdf")


def device_of(path: Path) -> tuple[str, str]:
    """What makes files one device's: the part type, else the test program."""
    lot = read_tables(path)["lots"].to_pylist()[0]
    return lot["part_type"] or "", "" if lot["part_type"] else lot["job_name"] or ""


def product_name(device: tuple[str, str]) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", "".join(device))[:40].strip("_.-")


@pytest.fixture(scope="module")
def onboarded(tmp_path_factory) -> tuple[Path, dict[str, InitOutcome]]:
    """Every sample, one product per device, all in one config folder: the outcome of each
    file's init (the suites run once per file here)."""
    files = sample_files()
    if not files:
        pytest.skip("no STDF samples")
    config_dir = tmp_path_factory.mktemp("config")
    devices: dict[tuple[str, str], list[Path]] = {}
    for path in files:
        devices.setdefault(device_of(path), []).append(path)
    outcomes = {}
    for device, paths in devices.items():
        outcome = init_product(paths, product_name(device), config_dir)
        outcomes.update({path.name: outcome for path in paths})
    return config_dir, outcomes


def outcome_of(onboarded, name: str) -> InitOutcome:
    _, outcomes = onboarded
    if name not in outcomes:
        pytest.skip(f"{name} is not among the samples")
    return outcomes[name]


def test_the_two_lot2_files_are_one_product(onboarded):
    outcome = outcome_of(onboarded, A530)
    assert sorted(c.path.name for c in outcome.checks) == ["lot2.stdf.gz", A530]
    assert outcome.path.name == "GOLD8BAR.yaml"


@pytest.mark.parametrize("path", sample_params())
def test_every_sample_passes_its_products_suites_and_matches_it(onboarded, path):
    config_dir, outcomes = onboarded
    outcome = outcomes[path.name]
    check = next(c for c in outcome.checks if c.path == path)
    assert check.passed, check.problem or check.report
    config = load_product(outcome.path)
    assert config.model_dump() == product_config(outcome.profile).model_dump()
    # With every sample's product configured side by side, each file still finds its own.
    tables = read_tables(path)
    facts = FileFacts.of(landing_key(config.name, path), tables["lots"])
    assert match_product(facts, config_dir).name == config.name
    # Never the empty PART_TYP alone: it is shared by every file of such a tester.
    assert config.match is not None and config.match.part_type not in ("^$", "")
    tests = tables["tests"].to_pandas()
    parametric = tests[tests["record"].isin(["PTR", "MPR"])]
    assert set(config.validation.physical_bounds) <= set(tests["test_id"])
    assert set(config.label_tests) <= set(tests["test_id"])
    for test in parametric.itertuples():
        low, high = config.validation.bounds(test.test_num, test.test_id)
        for limit in (test.lo_limit, test.hi_limit):
            if limit == limit:  # not NaN: well inside the physical bounds
                assert low < limit < high, test.test_id


def test_the_a530_gets_bin_1_good_with_the_comment(onboarded):
    outcome = outcome_of(onboarded, A530)
    config = load_product(outcome.path)
    assert config.bins.good == [1]
    assert config.bins.declared == [1, 2, 4, 5, 7, 8, 10, 15, 17, 20]
    assert "bin 1, assumed: the files' HBR records carry no P/F flag" in outcome.path.read_text()
    assert config.match is not None and config.match.part_type == "^GOLD8BAR$"
    assert config.wafer is not None and config.features.include_position
    assert config.tester.writes_pir and config.tester.writes_mrr
    # Every failing die with a failing result failed one of the label tests first; the
    # Ref-after-zap test bins 21 of them into bin 8.
    first = {t.test_id: t for t in outcome.profile.label_tests}
    assert first["1190_Ref_aft_zap_REF"].bins == [8]
    assert first["1190_Ref_aft_zap_REF"].first_fails == 2 * 21  # the same lot, twice


def test_the_93000_files_reused_numbers_are_distinct_test_ids(onboarded):
    outcome = outcome_of(onboarded, SMARTEST)
    config = load_product(outcome.path)
    # TEST_NUM 0 names 31 tests in this file (PTR and MPR): each gets its bounds by its id.
    records = read_records(next(c.path for c in outcome.checks), ["PTR", "MPR"])
    named_0 = {
        make_test_id(record, 0, name)
        for record, table in records.items()
        for name in table.filter(pc.equal(table["TEST_NUM"], 0))["TEST_TXT"].to_pylist()
        if name
    }
    assert len(named_0) == 31
    assert {ref for ref in config.validation.physical_bounds if str(ref).startswith("0_")} == (
        named_0
    )
    assert all(isinstance(ref, str) for ref in config.validation.physical_bounds)
    assert "0_continuity_P_passLimit_uA_mV_1" in config.label_tests  # an MPR, binning 11 dies
    # SmarTest leaves PART_TYP empty: the test program names the device.
    assert config.match is not None
    assert config.match.given() == {"job_name": r"^IN3250TA_WS_2_0_25C\.tpg$"}
    assert config.bins.good == [1] and "flag 'P' (HBIN_PF)" in outcome.path.read_text()


@pytest.mark.parametrize("name", FINAL_TEST)
def test_final_test_files_have_no_wafer_section(onboarded, name):
    outcome = outcome_of(onboarded, name)
    text = outcome.path.read_text()
    config = load_product(outcome.path)
    assert config.wafer is None and "\nwafer:" not in text
    assert not config.features.include_position
    assert "wafer_yield_mae" not in config.gate.metrics
    assert config.label_tests  # each file's failing die failed a test that binned it


def test_the_one_part_fusion_file_takes_its_good_bins_from_the_hbr_flags(onboarded):
    outcome = outcome_of(onboarded, "sn269_m40c_FusionCX.stdf")
    config = load_product(outcome.path)
    assert config.bins.good == [0, 1, 2, 3, 4]  # HBIN_PF 'P'; its one part is bin 14
    assert config.validation.yield_range == (0.0, 1.0)
    assert "This range checks nothing" in outcome.path.read_text()


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory) -> dict[str, tuple[Path, InitOutcome]]:
    """One synthetic lot of each product of the fab, onboarded under another name."""
    found = {}
    for name, spec in PRODUCTS.items():
        out = tmp_path_factory.mktemp(name)
        (lot,) = synthesize(out / "landing", lots=1, wafers_per_lot=1, product=spec)
        found[name] = (lot, init_product([lot], f"INIT-{name}", out / "config"))
    return found


@pytest.mark.parametrize("name", sorted(PRODUCTS))
def test_a_synthetic_lot_gives_the_product_it_was_made_as(synthetic, name):
    lot, outcome = synthetic[name]
    spec = PRODUCTS[name]
    assert outcome.passed, [c.report for c in outcome.checks]
    config = load_product(outcome.path)
    assert config.match is not None and config.match.part_type == f"^{literal(name)}$"
    assert set(config.bins.good) == set(spec.good_bins)
    assert set(config.bins.declared) == {b.number for b in spec.hard_bins}
    assert config.wafer is not None
    assert spec.dies_across / 2 <= config.wafer.radius_dies <= spec.dies_across / 2 * 1.1 + 2
    # Label tests: only the product's label-defining tests, each with the bin it gives.
    label_ids = {make_test_id("", t.test_num, t.name): t for t in spec.label_tests}
    assert set(config.label_tests) <= set(label_ids)
    assert outcome.profile.unexplained_failures == 0
    for test in outcome.profile.label_tests:
        if test.first_fails:
            assert test.bins == [label_ids[test.test_id].hard_bin], test
    deciding = {t.test_id for t in outcome.profile.label_tests if t.first_fails}
    binned = {b for b in pc.unique(read_tables(lot)["parts"]["hard_bin"]).to_pylist()}
    assert {label_ids[t].hard_bin for t in deciding} == binned - set(spec.good_bins)
    # The monitor tests have limits but never bin: they stay features, within bounds.
    for test in spec.tests:
        if isinstance(test, ParametricTest) and not test.label_defining:
            test_id = make_test_id("PTR", test.test_num, test.name)
            assert test_id not in config.label_tests
            low, high = config.validation.bounds(test.test_num, test_id)
            assert low < test.lo_limit < test.hi_limit < high


def test_physical_bounds_widen_the_limits_and_keep_a_dead_die_inside():
    assert physical_bounds((860e6, 910e6), (880e6, 890e6), (870e6, 895e6)) == (-8.24e9, 1.01e10)
    # One limit: the other end from the results' robust quantile
    assert physical_bounds((float("nan"), 0.01), (0.001, 0.005), (0.0, 0.02)) == (-0.099, 0.11)
    # No limit: the robust quantiles; a fault the files hold widens them (the files pass)
    assert physical_bounds((float("nan"),) * 2, (1.0, 2.0), (1.0, 1e30)) == (-19.0, 1e30)
    assert physical_bounds((0.0, 0.0), (0.0, 0.0), (0.0, 0.0)) == (-10.0, 10.0)
    assert physical_bounds((float("nan"),) * 2, (float("nan"),) * 2, (float("nan"),) * 2) is None


def test_an_existing_yaml_is_kept_without_force(synthetic):
    lot, outcome = synthetic["YO-7NM-ADC"]
    before = outcome.path.read_text()
    outcome.path.write_text(before + "# edited by hand\n")
    config_dir = outcome.path.parents[1]
    with pytest.raises(InitRefused, match=r"exists: give --force to replace it"):
        init_product([lot], outcome.profile.name, config_dir)
    assert outcome.path.read_text().endswith("# edited by hand\n")
    again = init_product([lot], outcome.profile.name, config_dir, force=True)
    assert again.passed and outcome.path.read_text() == before


@pytest.mark.parametrize("name", ["", "two words", "-dash-first", "a/b", "../up"])
def test_a_bad_product_name_is_refused_before_anything_is_read(tmp_path, name):
    with pytest.raises(InitRefused, match="is not a product name"):
        init_product([tmp_path / "never-read.stdf"], name, tmp_path)
    assert not (tmp_path / "products").exists()


def test_the_command_exits_by_outcome_and_names_what_went_wrong(synthetic, tmp_path, capsys):
    lot, _ = synthetic["YO-28NM-PMIC"]
    config = tmp_path / "config"
    args = ["product", "init", str(lot), "--name", "PMIC", "--config", str(config)]
    assert main(args) == EXIT_OK
    out = capsys.readouterr().out
    assert f"wrote {config / 'products' / 'PMIC.yaml'}" in out
    assert re.search(rf"^OK +{re.escape(str(lot))}: \d+ expectations passed", out, re.M)
    assert main(args) == EXIT_USAGE
    assert "exists: give --force" in capsys.readouterr().err
    # Another product whose rule takes every file, tried first (file names in order).
    (config / "products" / "AAA.yaml").write_text(
        "name: AAA\nmatch: {part_type: '.*'}\nbins: {good: [1], declared: [1]}\n"
    )
    assert main([*args, "--force"]) == EXIT_BAD_INPUT
    out = capsys.readouterr().out
    assert f"FAIL  {lot}: product 'AAA'" in out and "matches it first" in out
    not_stdf = tmp_path / "notes.stdf"
    not_stdf.write_text("not a tester file")
    assert main([*args[:2], str(not_stdf), *args[3:], "--force"]) == EXIT_BAD_INPUT
    assert str(not_stdf) in capsys.readouterr().err


def facts(part_type="", job_name="", family="", process="") -> FileFacts:
    return FileFacts("x.stdf", part_type, family, job_name, process)


@pytest.mark.parametrize(
    ("files", "rule"),
    [
        ([facts("SX1231.A")] * 2, {"part_type": r"^SX1231\.A$"}),
        (
            [facts(job_name="IN3250_WS_2_0"), facts(job_name="IN3250_WS_2_1")],
            {"job_name": "^IN3250_WS_2_"},
        ),
        (
            [facts(job_name="IN32", process="N7"), facts(job_name="IN32", process="N7")],
            {"job_name": "^IN32$", "process": "^N7$"},
        ),
        # Empty or unrelated everywhere: the landing folder, never an empty-field pattern
        ([facts(), facts()], {"path": "NEW/"}),
        ([facts("A"), facts("B")], {"path": "NEW/"}),
        ([facts(job_name="ab_1"), facts(job_name="ab_2")], {"path": "NEW/"}),
    ],
)
def test_the_match_rule_is_what_the_files_share_and_no_broader(files, rule):
    choice = match_rule(files, "NEW")
    assert choice.fields == rule
    for field, pattern in rule.items():
        if field != "path":
            assert all(re.search(pattern, getattr(f, field)) for f in files)
