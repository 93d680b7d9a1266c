"""Product YAML: the shipped files load, and bad files fail naming file and field."""

from __future__ import annotations

import pytest

from yieldops.config import ConfigError, load_product, product, products
from yieldops.synth import PRODUCTS


def test_shipped_products_load_and_match_the_synthetic_fab():
    configured = products()
    assert set(PRODUCTS) <= set(configured)
    for name, spec in PRODUCTS.items():
        config = configured[name]
        assert set(config.label_tests) == set(spec.label_defining_tests)
        assert set(config.bins.good) == set(spec.good_bins)
        assert config.wafer.radius_dies == spec.dies_across / 2


def test_unknown_product_names_the_configured_ones():
    with pytest.raises(ConfigError, match=r"no product configuration for 'NOPE'.*YO-7NM-ADC"):
        product("NOPE")


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("name: X\nbins: {good: [1], declared: [2]}\nwafer: {radius_dies: 5}\n", "good bins"),
        (
            "name: X\nbins: {good: [1], declared: [1]}\nwafer: {radius_dies: -1}\n",
            "wafer.radius_dies",
        ),
        (
            "name: X\nbins: {good: [1], declared: [1]}\nwafer: {radius_dies: 5}\ncolour: red\n",
            "colour",
        ),
        ("name: X\nbins: {good: [1], declared: [1]\n", "expected ',' or '}'"),
    ],
)
def test_bad_yaml_names_file_and_field(tmp_path, text, problem):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_product(path)
    assert str(path) in str(caught.value) and problem in str(caught.value)
