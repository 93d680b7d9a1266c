"""Which product a landed file belongs to: match blocks, their order, and the reason a file
that matches nothing is quarantined with."""

from __future__ import annotations

from pathlib import Path

import pytest

from yieldops.config import ConfigError, load_product
from yieldops.product_match import FileFacts, NoProductMatch, match_product

BASE = "bins: {good: [1], declared: [1, 2]}\n"


def write_products(directory: Path, **yaml_by_file: str) -> Path:
    (directory / "products").mkdir(parents=True)
    for file, text in yaml_by_file.items():
        (directory / "products" / f"{file}.yaml").write_text(text + BASE)
    return directory


def facts(key: str = "tester-1/lot.stdf", **mir: str | None) -> FileFacts:
    return FileFacts(key, **mir)


@pytest.fixture
def config_dir(tmp_path: Path) -> Path:
    return write_products(
        tmp_path,
        # a SmarTest flow: PART_TYP empty, known by its job name
        a_smartest="name: IN3250\nmatch: {part_type: '^$', job_name: '^IN3250TA_WS_'}\n",
        # any file landed in the product's upload folder
        b_by_path="name: RF-FE\nmatch: {path: 'RF-FE/'}\n",
        # no match block: MIR PART_TYP equal to the name
        c_plain="name: GOLD8BAR\n",
        d_catch_all="name: LATE\nmatch: {file_name: 'GOLD'}\n",
    )


def test_match_blocks_first_in_file_name_order_then_the_part_type(config_dir: Path) -> None:
    smartest = facts(part_type="", job_name="IN3250TA_WS_2_0_25C.tpg")
    assert match_product(smartest, config_dir).name == "IN3250"
    # Every field of a block must match: the same job under another PART_TYP does not.
    with pytest.raises(NoProductMatch):
        match_product(facts(part_type="OTHER", job_name="IN3250TA_WS_2"), config_dir)
    assert match_product(facts("RF-FE/x/lot.stdf", part_type=""), config_dir).name == "RF-FE"
    assert match_product(facts(part_type="GOLD8BAR"), config_dir).name == "GOLD8BAR"
    # A match block wins over the plain PART_TYP rule, whatever the files' order.
    named = facts("in/GOLD8BAR_lot2.stdf", part_type="GOLD8BAR")
    assert match_product(named, config_dir).name == "LATE"


def test_a_file_that_matches_nothing_says_what_it_is_and_how_to_onboard(
    config_dir: Path,
) -> None:
    stranger = facts(
        "tester-9/ayad.stdf", part_type="", job_name="X.tpg", tester_type="93000-SOC",
        tester_node="hp93k8",
    )  # fmt: skip
    with pytest.raises(NoProductMatch) as caught:
        match_product(stranger, config_dir)
    message = str(caught.value)
    for said in ("PART_TYP ''", "JOB_NAM 'X.tpg'", "TSTR_TYP '93000-SOC'", "NODE_NAM 'hp93k8'"):
        assert said in message
    assert f"yieldops product init ayad.stdf --name <PRODUCT> --config {config_dir}" in message
    assert "configured in" in message and "GOLD8BAR, IN3250, LATE, RF-FE" in message


@pytest.mark.parametrize(
    ("block", "problem"),
    [
        ("match: {}\n", "give at least one of"),
        ("match: {job_name: '(unclosed'}\n", "match.job_name: '(unclosed' is not a regex"),
        ("match: {colour: red}\n", "match.colour"),
    ],
)
def test_bad_match_blocks_name_the_file_and_field(tmp_path: Path, block: str, problem: str) -> None:
    path = tmp_path / "p.yaml"
    path.write_text("name: P\n" + block + BASE)
    with pytest.raises(ConfigError, match=r"p\.yaml") as caught:
        load_product(path)
    assert problem in str(caught.value)


@pytest.mark.parametrize("name", ["", "with space", "a/b", "-lead"])
def test_product_names_fit_assets_partitions_and_mlflow(tmp_path: Path, name: str) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(f"name: '{name}'\n" + BASE)
    with pytest.raises(ConfigError, match="name"):
        load_product(path)


def test_tests_are_named_by_number_or_test_id(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(
        "name: P\nlabel_tests: [0_Vopp_OUT1N, 7]\n"
        "validation: {physical_bounds: {0_Vopp_OUT1N: [0, 5], 0: [-1, 1]}}\n" + BASE
    )
    config = load_product(path)
    assert config.is_label_test(0, "0_Vopp_OUT1N") and config.is_label_test(7, "7_ANY")
    assert not config.is_label_test(0, "0_Vopp_OUT1P")
    # a test id is more specific than its number
    assert config.validation.bounds(0, "0_Vopp_OUT1N") == (0, 5)
    assert config.validation.bounds(0, "0_Vopp_OUT1P") == (-1, 1)
    assert config.validation.bounds(3, "3_X") == config.validation.default_bounds
