"""Product configuration: one YAML file per product in ``include/config/products/``.

Data engineers edit these files; they are validated on load so a typo fails
with the file name and the field, not somewhere deep in a task.
"""

from __future__ import annotations

import os
import re
from functools import cache
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from .curated.identity import refers_to
from .layout import default_config_dir


class ConfigError(ValueError):
    """A configuration file is missing, not YAML, or does not match its schema."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


ModelT = TypeVar("ModelT", bound=BaseModel)


class Bins(_Strict):
    good: list[int] = Field(min_length=1, description="hard bins of a good die")
    declared: list[int] = Field(min_length=1, description="every hard bin the tester may assign")

    @model_validator(mode="after")
    def _good_are_declared(self) -> Bins:
        missing = set(self.good) - set(self.declared)
        if missing:
            raise ValueError(f"good bins {sorted(missing)} are not in declared bins")
        return self


# A test as a product YAML names it: a number (every test with that number: fine where the
# tester's numbers are unique) or a test id (number and name, see yieldops.curated.identity).
TestRef = int | str


def _first_ref(refs: list[TestRef] | dict[TestRef, Any], test_num: int, test_id: str) -> Any:
    """The entry that names this test: its test id first, else its number; None if none."""
    for ref in sorted(refs, key=lambda r: isinstance(r, int)):
        if refers_to(ref, test_num, test_id):
            return ref
    return None


class WaferMap(_Strict):
    radius_dies: float = Field(gt=0, description="dies lie within this radius of the centre")
    center: tuple[float, float] = (0.0, 0.0)


class Validation(_Strict):
    yield_range: tuple[float, float] = Field(default=(0.2, 1.0), description="plausible file yield")
    max_missing_rate: float = Field(
        default=0.05, ge=0, le=1, description="per test, share of parts"
    )
    missing_rates: dict[TestRef, Annotated[float, Field(ge=0, le=1)]] = Field(
        default_factory=dict,
        description="per test, its own missing rate (e.g. a test the flow runs on a sample "
        "of the dies); the others: max_missing_rate",
    )
    # Results outside these are physically impossible (tester or datalog fault).
    physical_bounds: dict[TestRef, tuple[float, float]] = Field(default_factory=dict)
    default_bounds: tuple[float, float] = (-1e9, 1e9)

    def bounds(self, test_num: int, test_id: str = "") -> tuple[float, float]:
        ref = _first_ref(self.physical_bounds, test_num, test_id)
        return self.default_bounds if ref is None else self.physical_bounds[ref]

    def missing_rate(self, test_num: int, test_id: str = "") -> float:
        ref = _first_ref(self.missing_rates, test_num, test_id)
        return self.max_missing_rate if ref is None else self.missing_rates[ref]


class Repeats(_Strict):
    """What counts when a tester measures the same thing more than once."""

    tests: Literal["last", "first", "all"] = Field(
        default="last",
        description="a test run more than once on a part (loops, a retest within the flow): "
        "the last result (the one binning used), the first, or all as their own columns "
        "(<column>.r2, .r3, ...)",
    )
    dies: Literal["last", "first", "all"] = Field(
        default="last",
        description="a die tested again (a retest: the same lot, wafer, x and y): its last "
        "part (the final bin), its first, or every part as its own row",
    )


class Features(_Strict):
    """What the yield model sees of a die (see :mod:`yieldops.features`)."""

    tests: list[TestRef] | None = Field(
        default=None,
        description="parametric tests (PTR, and each pin of an MPR) by number or test id, in "
        "column order; None = every parametric test in the data except label_tests",
    )
    exclude: list[TestRef] = Field(
        default_factory=list,
        description="tests never used as features, e.g. tests a stop-on-fail flow runs only "
        "on dies that passed the earlier ones: their mere absence tells the label",
    )
    include_position: bool = Field(
        default=True, description="x, y and radius from the wafer centre"
    )
    include_site: bool = Field(default=True, description="the tester site that probed the die")

    @model_validator(mode="after")
    def _tests_unique(self) -> Features:
        if self.tests is not None:
            if not self.tests and not (self.include_position or self.include_site):
                raise ValueError("no features: give tests or include position or site")
            repeated = sorted({t for t in self.tests if self.tests.count(t) > 1})
            if repeated:
                raise ValueError(f"tests {repeated} are listed more than once")
        return self


# Only scikit-learn classifiers from these modules: the class is imported by name from YAML
# and the model is saved in skops format, which loads only trusted types.
ESTIMATOR_MODULES = (
    "sklearn.discriminant_analysis",
    "sklearn.dummy",
    "sklearn.ensemble",
    "sklearn.linear_model",
    "sklearn.naive_bayes",
    "sklearn.neighbors",
    "sklearn.neural_network",
    "sklearn.svm",
    "sklearn.tree",
)
_CLASS_PATH = re.compile(r"^(?P<module>[a-z_][a-z0-9_.]*)\.(?P<name>[A-Z][A-Za-z0-9_]*)$")


class ModelSpec(_Strict):
    """The estimator behind the imputer, and which lots train and which test it."""

    estimator: str = Field(
        default="sklearn.ensemble.HistGradientBoostingClassifier",
        description="dotted path of a scikit-learn classifier class",
    )
    params: dict[str, Any] = Field(default_factory=dict, description="estimator arguments")
    random_state: int = Field(default=0, description="seed, when the estimator takes one")
    threads: int | None = Field(
        default=1,
        ge=1,
        description="OpenMP threads for fit and predict; None = every core. Gradient boosting "
        "on a core shared with other tasks runs orders of magnitude slower multi-threaded",
    )
    serving_tolerance: float = Field(
        default=1e-4,
        gt=0,
        description="largest P(good) difference on the holdout between the ONNX serving form "
        "and the pipeline; past it the version is not registered (README, 'Serving form')",
    )
    holdout_lots: int = Field(
        default=1, ge=1, description="newest lots (by MIR start time) held out"
    )
    train_lots: int | None = Field(
        default=None, ge=1, description="at most this many lots before the holdout; None = all"
    )

    @model_validator(mode="after")
    def _allowed_estimator(self) -> ModelSpec:
        match = _CLASS_PATH.match(self.estimator)
        if not match or match["module"] not in ESTIMATOR_MODULES:
            raise ValueError(
                f"estimator {self.estimator!r} is not allowed: give a classifier class "
                f"from {', '.join(ESTIMATOR_MODULES)}"
            )
        return self


# Holdout metrics a gate may judge, and whether more is better (see yieldops.training).
GATE_METRICS: dict[str, bool] = {
    "accuracy": True,
    "balanced_accuracy": True,
    "roc_auc": True,
    "precision_bad": True,
    "recall_bad": True,
    "recall_bad_at_precision": True,
    "log_loss": False,
    "wafer_yield_mae": False,
}


class MetricGate(_Strict):
    threshold: float | None = Field(
        default=None, description="absolute: at least this (at most, for a lower-is-better metric)"
    )
    min_lift: float | None = Field(
        default=None,
        ge=0,
        description="skill: at least this much better than the metric's no-skill baseline on "
        "the same holdout (e.g. accuracy over always predicting the majority class)",
    )
    tolerance: float | None = Field(
        default=None, ge=0, description="relative: at most this much worse than the champion"
    )


def _default_gate_metrics() -> dict[str, MetricGate]:
    # Measured on the synthetic fab (README, "The gate"): trained models clear every one of
    # these on a drifted holdout; a shuffled-label and an always-good model fail them.
    return {
        "accuracy": MetricGate(min_lift=0.002, tolerance=0.01),
        "balanced_accuracy": MetricGate(threshold=0.55, tolerance=0.02),
        "roc_auc": MetricGate(threshold=0.60, tolerance=0.02),
        "recall_bad_at_precision": MetricGate(threshold=0.25, tolerance=0.05),
        "wafer_yield_mae": MetricGate(threshold=0.12, tolerance=0.02),
    }


class Gate(_Strict):
    """When a challenger may be registered: judged on the holdout, beside the champion and
    beside what a model without skill scores there."""

    metrics: dict[str, MetricGate] = Field(default_factory=_default_gate_metrics, min_length=1)
    recall_precision: float = Field(
        default=0.5,
        gt=0,
        le=1,
        description="the precision at which recall_bad_at_precision is read: the share of "
        "flagged dies that must really be bad",
    )

    @model_validator(mode="after")
    def _known_metrics(self) -> Gate:
        unknown = sorted(set(self.metrics) - set(GATE_METRICS))
        if unknown:
            raise ValueError(
                f"cannot gate on {unknown}: known metrics are {', '.join(GATE_METRICS)}"
            )
        return self


class Match(_Strict):
    """Which landed files belong to a product: every field given must match (regular
    expressions, searched; an empty field is a value like any other: ``^$`` matches it)."""

    part_type: str | None = Field(default=None, description="MIR PART_TYP")
    family: str | None = Field(default=None, description="MIR FAMLY_ID")
    job_name: str | None = Field(default=None, description="MIR JOB_NAM")
    process: str | None = Field(default=None, description="MIR PROC_ID")
    path: str | None = Field(
        default=None,
        description="landing path prefix, e.g. 'landing/YO-ADC/' (the tester's upload folder)",
    )
    file_name: str | None = Field(default=None, description="the file's name")

    @model_validator(mode="after")
    def _patterns_compile(self) -> Match:
        for field, pattern in self.patterns().items():
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"match.{field}: {pattern!r} is not a regex: {exc}") from exc
        if not self.given():
            raise ValueError("match: give at least one of " + ", ".join(Match.model_fields))
        return self

    def given(self) -> dict[str, str]:
        return {k: v for k, v in self.model_dump().items() if v is not None}

    def patterns(self) -> dict[str, str]:
        return {k: v for k, v in self.given().items() if k != "path"}


class TesterHabits(_Strict):
    """What the product's tester writes (from `yieldops product init`), for readers and for
    the completeness rules of ingest."""

    writes_pir: bool | None = Field(default=None, description="a PIR opens every part")
    writes_mrr: bool | None = Field(default=None, description="an MRR ends every file")


PRODUCT_NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]*$"


class ProductConfig(_Strict):
    name: str = Field(
        pattern=PRODUCT_NAME,
        description="the product: curated partition, asset curated/<name>, model yield-<name>",
    )
    description: str = ""
    match: Match | None = Field(
        default=None, description="which files are this product's; none: MIR PART_TYP == name"
    )
    tester: TesterHabits = TesterHabits()
    bins: Bins
    wafer: WaferMap | None = Field(default=None, description="none for final test (no wafers)")
    label_tests: list[TestRef] = Field(
        default_factory=list, description="tests whose limits decide the bin (not features)"
    )
    repeats: Repeats = Repeats()
    validation: Validation = Validation()
    features: Features = Features()
    model: ModelSpec = ModelSpec()
    gate: Gate = Gate()
    source: Path | None = Field(default=None, exclude=True)

    @model_validator(mode="after")
    def _no_label_features(self) -> ProductConfig:
        leaking = [t for t in self.features.tests or () if t in self.label_tests]
        if leaking:
            raise ValueError(f"features.tests {leaking} are label_tests: they decide the bin")
        return self

    def is_label_test(self, test_num: int, test_id: str) -> bool:
        return _first_ref(self.label_tests, test_num, test_id) is not None

    def is_feature_test(self, test_num: int, test_id: str) -> bool:
        """Whether the model may see this test when the YAML lists no features.tests."""
        excluded = _first_ref(self.features.exclude, test_num, test_id) is not None
        return not (excluded or self.is_label_test(test_num, test_id))


def config_dir() -> Path:
    return Path(os.environ.get("YIELDOPS_CONFIG_DIR") or default_config_dir())


def load_yaml(path: Path, schema: type[ModelT], **extra: Any) -> ModelT:
    """``schema`` validated from a YAML file; ConfigError names the file and each field."""
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: {exc}") from exc
    if not isinstance(data, dict | None):
        raise ConfigError(f"{path}: the top level is a {type(data).__name__}, not a mapping")
    try:
        return schema.model_validate({**(data or {}), **extra})
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors(include_url=False)
        )
        raise ConfigError(f"{path}: {problems}") from exc


def load_product(path: Path) -> ProductConfig:
    return load_yaml(path, ProductConfig, source=path)


def reload_products() -> None:
    """Forget the product files read so far (e.g. after writing one in this process)."""
    _products.cache_clear()


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
