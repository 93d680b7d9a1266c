"""yieldops product init: synthetic lots profiled into a product YAML that loads, takes its
files through product matching and passes its own suites (the real samples: in
tests/tester_files, untraced, where they also go through `yieldops run`)."""

from __future__ import annotations

import re
from pathlib import Path

import pyarrow.compute as pc
import pytest

from yieldops.cli import EXIT_BAD_INPUT, EXIT_OK, EXIT_USAGE, main
from yieldops.config import load_product
from yieldops.curated.identity import make_test_id
from yieldops.product_init import (
    InitOutcome,
    InitRefused,
    init_product,
    literal,
    match_rule,
    physical_bounds,
)
from yieldops.product_match import FileFacts
from yieldops.stdf import read_tables
from yieldops.synth import PRODUCTS, ParametricTest, synthesize


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
