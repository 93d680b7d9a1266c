"""yieldops product init on the real samples: each device's YAML loads, takes its files
through product matching, passes its own suites, and says what the files said."""

from __future__ import annotations

import pyarrow.compute as pc
import pytest
from tests.conftest import sample_params

from yieldops.config import load_product
from yieldops.curated.identity import make_test_id
from yieldops.product_init import InitOutcome, landing_key, product_config
from yieldops.product_match import FileFacts, match_product
from yieldops.stdf import read_records, read_tables

A530 = "lot2_A530_wafer.stdf"
SMARTEST = "ayad_ws_93k_wafer.stdf"
FINAL_TEST = ("rabbi_IntegraFlex_4site.stdf", "sn269_m40c_FusionCX.stdf")


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
