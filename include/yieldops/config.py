"""Product configuration: one YAML file per product in ``include/config/products/``.

Data engineers edit these files; they are validated on load so a typo fails
with the file name and the field, not somewhere deep in a task.
"""

from __future__ import annotations

import os
from functools import cache
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

DEFAULT_CONFIG_DIR = Path(__file__).resolve().parents[1] / "config"


class ConfigError(ValueError):
    """A configuration file is missing, not YAML, or does not match its schema."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Bins(_Strict):
    good: list[int] = Field(min_length=1, description="hard bins of a good die")
    declared: list[int] = Field(min_length=1, description="every hard bin the tester may assign")

    @model_validator(mode="after")
    def _good_are_declared(self) -> Bins:
        missing = set(self.good) - set(self.declared)
        if missing:
            raise ValueError(f"good bins {sorted(missing)} are not in declared bins")
        return self


class WaferMap(_Strict):
    radius_dies: float = Field(gt=0, description="dies lie within this radius of the centre")
    center: tuple[float, float] = (0.0, 0.0)


class Validation(_Strict):
    yield_range: tuple[float, float] = Field((0.2, 1.0), description="plausible file yield")
    max_missing_rate: float = Field(0.05, ge=0, le=1, description="per test, share of parts")
    # Results outside these are physically impossible (tester or datalog fault).
    physical_bounds: dict[int, tuple[float, float]] = Field(default_factory=dict)
    default_bounds: tuple[float, float] = (-1e9, 1e9)

    def bounds(self, test_num: int) -> tuple[float, float]:
        return self.physical_bounds.get(test_num, self.default_bounds)


class ProductConfig(_Strict):
    name: str = Field(description="MIR PART_TYP of the product's files")
    description: str = ""
    bins: Bins
    wafer: WaferMap
    label_tests: list[int] = Field(
        default_factory=list, description="tests whose limits decide the bin (not features)"
    )
    validation: Validation = Validation()
    source: Path | None = Field(None, exclude=True)


def config_dir() -> Path:
    return Path(os.environ.get("YIELDOPS_CONFIG_DIR", DEFAULT_CONFIG_DIR))


def load_product(path: Path) -> ProductConfig:
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: {exc}") from exc
    try:
        return ProductConfig.model_validate({**(data or {}), "source": path})
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors(include_url=False)
        )
        raise ConfigError(f"{path}: {problems}") from exc


@cache
def _products(directory: Path) -> dict[str, ProductConfig]:
    products: dict[str, ProductConfig] = {}
    for path in sorted((directory / "products").glob("*.y*ml")):
        product = load_product(path)
        if product.name in products:
            raise ConfigError(
                f"{path}: product {product.name!r} is defined twice "
                f"(also in {products[product.name].source})"
            )
        products[product.name] = product
    return products


def products(directory: Path | None = None) -> dict[str, ProductConfig]:
    """Every configured product by name."""
    return _products(directory or config_dir())


def product(name: str, directory: Path | None = None) -> ProductConfig:
    """The configuration of one product; ConfigError names the products there are."""
    known = products(directory)
    if name not in known:
        raise ConfigError(
            f"no product configuration for {name!r} in {(directory or config_dir()) / 'products'} "
            f"(configured: {', '.join(sorted(known)) or 'none'})"
        )
    return known[name]
