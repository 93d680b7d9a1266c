"""What a synthetic product is: its wafer, its probe card, its test program and its bins.

Tests are listed in flow order: the first label-defining test a die fails decides
its bin. A test is label-defining when it has a hard bin; the others are early,
cheap monitor tests that are datalogged but never bin a die, so a model may use
them as features without learning the label from its own definition.

Every parametric value is drawn as ``z + shift`` in units of the test's sigma,
where ``z`` is the die's own noise and ``shift`` comes from the latent causes
(see :mod:`yieldops.synth.fab`): ``edge`` (0 in the centre, 1 at the rim),
``defectivity`` (clusters and random defects) and ``process`` (drifts between
lots). Each test says how strongly it follows each cause.

A test is named in a file by its record type, number and name (``curated.identity``).
``test_num`` keys the fab's results and must be unique in a product; ``stdf_num`` is the
number written to the file when it differs, as on testers that reuse numbers across tests
(an Advantest 93000 flow may write ``TEST_NUM 0`` for every multi-pin test).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from ..curated.identity import make_test_id


@dataclass(frozen=True, kw_only=True)
class BaseTest:
    """What every kind of test has."""

    record: ClassVar[str]  # the STDF record of its results: PTR, MPR or FTR

    test_num: int
    name: str
    hard_bin: int | None = None  # bin of a die failing this test first; None: datalog only
    soft_bin: int | None = None
    time_ms: float = 1.0  # tester time per execution, makes up PRR TEST_T
    stdf_num: int | None = None  # TEST_NUM in the file when not test_num (a reused number)

    @property
    def label_defining(self) -> bool:
        return self.hard_bin is not None

    @property
    def file_num(self) -> int:
        """The TEST_NUM its records carry."""
        return self.test_num if self.stdf_num is None else self.stdf_num

    @property
    def test_id(self) -> str:
        """Its id in the curated tables (``curated.identity``), the same in every file."""
        return make_test_id(self.record, self.file_num, self.name)


@dataclass(frozen=True, kw_only=True)
class LimitedTest(BaseTest):
    """A measured test with limits; ``lo_limit <= value <= hi_limit`` passes."""

    units: str
    lo_limit: float
    hi_limit: float
    mean: float  # the median when lognormal
    sigma: float  # in log space when lognormal
    lognormal: bool = False  # leakage-like: positive, right-skewed
    edge_gain: float = 0.0  # sigmas of shift at the wafer rim
    defect_gain: float = 0.0  # sigmas of shift per unit of defectivity
    process_gain: float = 0.0  # sigmas of shift per unit of the (drifting) process latent
    site_gain: float = 0.0  # sigmas of shift per site number (probe-card skew)

    def limits32(self) -> tuple[np.float32, np.float32]:
        """Limits as written to the file (R4), so pass/fail agrees with any reader."""
        return np.float32(self.lo_limit), np.float32(self.hi_limit)

    def draw(self, z: np.ndarray, shift: np.ndarray) -> np.ndarray:
        scaled = self.sigma * (z + shift)
        values = self.mean * np.exp(scaled) if self.lognormal else self.mean + scaled
        return values.astype(np.float32)


@dataclass(frozen=True, kw_only=True)
class ParametricTest(LimitedTest):
    """One value per die, written as a PTR."""

    record = "PTR"


@dataclass(frozen=True, kw_only=True)
class MultiPinTest(LimitedTest):
    """One value per pin per die, written as an MPR: continuity on every signal pin (with
    contact faults), or leakage and supply currents per pin (following the latent causes)."""

    record = "MPR"

    pins: tuple[str, ...]
    fault_rate: float = 0.0  # share of dies with one open or shorted pin
    open_value: float = 0.0  # reading of an open pin
    short_value: float = 0.0  # reading of a shorted pin


@dataclass(frozen=True, kw_only=True)
class FunctionalTest(BaseTest):
    """Pattern pass/fail, written as an FTR; defects make failures likelier."""

    record = "FTR"

    pattern: str  # FTR VECT_NAM
    base_fail: float  # failure chance of a defect-free die
    defect_kill: float  # p(fail) = 1 - (1 - base_fail) * exp(-defect_kill * defectivity)


AnyTest = ParametricTest | MultiPinTest | FunctionalTest


@dataclass(frozen=True)
class Bin:
    number: int
    name: str
    good: bool = False


@dataclass(frozen=True, kw_only=True)
class DefectModel:
    """How yield loss is laid out on a wafer and between lots."""

    edge_onset: float = 0.85  # normalised radius where the edge ring starts
    clusters_per_wafer: float = 2.0  # mean of a Poisson count
    cluster_radius: tuple[float, float] = (1.5, 4.0)  # in dies, uniform range
    cluster_strength: tuple[float, float] = (0.8, 2.5)  # defectivity at a cluster centre
    random_defect_rate: float = 0.015  # share of dies with an isolated defect
    background: float = 0.005  # mean defectivity everywhere
    process_bowl: float = 0.5  # process shift at the rim relative to the centre
    wafer_process_sd: float = 0.15
    die_process_sd: float = 0.5


PASS_SOFT_BIN = Bin(1, "PASS", good=True)


@dataclass(frozen=True, kw_only=True)
class ProductSpec:
    name: str  # MIR PART_TYP
    process_id: str  # MIR PROC_ID
    tests: tuple[AnyTest, ...]  # flow order
    hard_bins: tuple[Bin, ...]
    wafer_size_mm: float = 300.0
    dies_across: int = 40  # wafer diameter in dies
    site_layout: tuple[int, int] = (2, 2)  # dies per touchdown: columns, rows
    stop_on_fail: bool = False  # production flow: skip the rest after the first binning fail
    defects: DefectModel = DefectModel()

    def __post_init__(self) -> None:
        numbers = [t.test_num for t in self.tests]
        if len(set(numbers)) != len(numbers):
            raise ValueError(f"{self.name}: duplicate test numbers")
        twins = [i for i, n in Counter(t.test_id for t in self.tests).items() if n > 1]
        if twins:
            raise ValueError(f"{self.name}: tests {twins} would be one test in a file")
        bins = {b.number for b in self.hard_bins}
        if not any(b.good for b in self.hard_bins):
            raise ValueError(f"{self.name}: no good hard bin")
        for t in self.label_tests:
            if t.hard_bin not in bins or t.soft_bin is None:
                raise ValueError(
                    f"{self.name}: test {t.test_num} needs a known hard bin and a soft bin"
                )
        soft = [b.number for b in self.soft_bins]
        if len(set(soft)) != len(soft):
            raise ValueError(f"{self.name}: duplicate soft bins")

    @property
    def n_sites(self) -> int:
        return self.site_layout[0] * self.site_layout[1]

    @property
    def die_size_mm(self) -> float:
        return self.wafer_size_mm / self.dies_across

    @property
    def label_tests(self) -> tuple[AnyTest, ...]:
        """Tests whose limits decide the bin, in flow order."""
        return tuple(t for t in self.tests if t.label_defining)

    @property
    def label_defining_tests(self) -> frozenset[int]:
        """Test numbers a feature set must leave out (their results define the label)."""
        return frozenset(t.test_num for t in self.label_tests)

    @property
    def reuses_test_numbers(self) -> bool:
        """Whether two tests write the same record type and TEST_NUM (told apart by name)."""
        written = Counter((t.record, t.file_num) for t in self.tests)
        return any(n > 1 for n in written.values())

    @property
    def good_bins(self) -> frozenset[int]:
        return frozenset(b.number for b in self.hard_bins if b.good)

    @property
    def soft_bins(self) -> tuple[Bin, ...]:
        """The pass bin, then one soft bin per label-defining test."""
        fails = []
        for t in self.label_tests:
            if t.soft_bin is None:
                raise ValueError(f"{self.name}: test {t.test_num} needs a soft bin")
            fails.append(Bin(t.soft_bin, f"FAIL_{t.name}"))
        return (PASS_SOFT_BIN, *sorted(fails, key=lambda b: b.number))

    def test(self, test_num: int) -> AnyTest:
        return next(t for t in self.tests if t.test_num == test_num)
