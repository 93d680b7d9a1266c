"""Lots, wafers and dies whose yield loss a model can learn and a person can see on a wafer map.

Three latent causes per die drive every result (see :mod:`yieldops.synth.product`):

- ``edge``: 0 inside ``edge_onset``, rising linearly to 1 at the rim; raises leakage, so the
  rim fails more (edge ring).
- ``defectivity``: a few clusters per wafer with a radial falloff, isolated random
  defects and a small background; it raises leakage and makes functional tests fail,
  so leakage monitors carry a signal about functional failures.
- ``process``: a bowl across the wafer, wafer-to-wafer noise, die noise and a shift of
  ``drift`` per lot index, so later lots lose yield on process-sensitive tests.

A flow that retests failures (``retest_failures``) probes every failing die once more at
the end of its wafer: the same latent causes with fresh noise, so contact faults and
marginal fails often pass the second time and true defects keep failing.

Everything comes from a numpy Generator seeded with ``(seed, lot_index, wafer)``: the
same arguments always give the same lot, whichever other lots are generated.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, replace
from datetime import datetime, timezone

import numpy as np

from .product import (
    PASS_SOFT_BIN,
    AnyTest,
    DefectModel,
    FunctionalTest,
    LimitedTest,
    MultiPinTest,
    ProductSpec,
)

DEFAULT_DRIFT = 1.0  # process shift per lot index, in sigmas of the process-sensitive tests
DEFAULT_FACILITY = "YO-FAB1"
TESTERS = ("yo-ate-01", "yo-ate-02", "yo-ate-03")
_FIRST_LOT_START = int(datetime(2025, 1, 6, 6, 0, tzinfo=timezone.utc).timestamp())
_LOT_SPACING_S = 6 * 3600
_WAFER_LOAD_S = 60  # unload, load and align between wafers
_INDEX_MS = 300  # prober step between touchdowns
_PART_OVERHEAD_MS = 5.0  # power-up and bookkeeping per part


@dataclass(frozen=True, eq=False)
class DieGrid:
    """Dies of a round wafer in probing order: touchdown by touchdown, site by site.

    Coordinates are die units with the wafer centre at the centre of die (0, 0);
    a die is on the wafer when all of it lies inside the wafer radius.
    """

    x: np.ndarray
    y: np.ndarray
    site: np.ndarray
    touchdown: np.ndarray
    radius: float  # in dies


@functools.cache
def die_grid(dies_across: int, site_layout: tuple[int, int]) -> DieGrid:
    radius = dies_across / 2
    half = int(np.ceil(radius))
    xs, ys = np.meshgrid(np.arange(-half, half + 1), np.arange(-half, half + 1))
    on_wafer = (np.abs(xs) + 0.5) ** 2 + (np.abs(ys) + 0.5) ** 2 <= radius**2
    x, y = xs[on_wafer], ys[on_wafer]
    cols, rows = site_layout
    block_col, site_col = np.divmod(x - x.min(), cols)
    block_row, site_row = np.divmod(y.max() - y, rows)  # the prober starts at the top
    site = site_row * cols + site_col
    serpentine = np.where(block_row % 2 == 0, block_col, -block_col)
    order = np.lexsort((site, serpentine, block_row))
    block = (block_row * (block_col.max() + 1) + block_col)[order]
    touchdown = np.concatenate(([0], np.cumsum(np.diff(block) != 0)))
    arrays = (x[order].astype(np.int16), y[order].astype(np.int16), site[order].astype(np.uint8))
    for array in (*arrays, touchdown):
        array.flags.writeable = False  # shared by every wafer of the product
    return DieGrid(*arrays, touchdown=touchdown, radius=radius)


@dataclass(frozen=True, eq=False)
class Wafer:
    """One wafer's dies in probing order, as a tester would record them.

    ``results`` maps test number to a float32 array (PTR), a float32 array of
    shape (dies, pins) (MPR) or a bool array, True = passed (FTR). A die ran the
    first ``num_tests`` tests of the flow; with ``stop_on_fail`` the rest were
    skipped and are absent from the file, though ``results`` still holds what
    they would have measured. ``edge``, ``defectivity`` and ``process`` are the
    latent causes. ``retests`` holds the failing dies probed again at the end of
    the wafer (one touchdown each), when the flow retests failures.
    """

    wafer_id: str
    start_t: int
    finish_t: int
    x: np.ndarray
    y: np.ndarray
    site: np.ndarray
    touchdown: np.ndarray
    part_id: np.ndarray
    hard_bin: np.ndarray
    soft_bin: np.ndarray
    good: np.ndarray
    num_tests: np.ndarray
    test_time_ms: np.ndarray
    results: dict[int, np.ndarray]
    edge: np.ndarray
    defectivity: np.ndarray
    process: np.ndarray
    retests: Wafer | None = None

    @property
    def n_dies(self) -> int:
        return len(self.x)

    def with_retests(self) -> tuple[Wafer, ...]:
        """The wafer's parts in test order: every die, then the retested ones."""
        return (self,) if self.retests is None else (self, self.retests)

    @property
    def n_parts(self) -> int:
        """Parts tested (PRRs): every die, and each retested die once more."""
        return sum(w.n_dies for w in self.with_retests())

    @property
    def end_t(self) -> int:
        """When the wafer left the prober: after its retests."""
        return self.with_retests()[-1].finish_t

    def executed(self, flow_index: int) -> np.ndarray:
        """Which dies ran the test at this position of the flow."""
        return self.num_tests > flow_index


@dataclass(frozen=True, eq=False)
class Lot:
    product: ProductSpec
    lot_id: str
    lot_index: int
    seed: int
    process_shift: float  # drift * lot_index
    tester: str
    setup_t: int
    start_t: int
    finish_t: int
    wafers: tuple[Wafer, ...]
    facility: str = DEFAULT_FACILITY  # MIR FACIL_ID: the fab that tested the lot

    @property
    def n_dies(self) -> int:
        return sum(w.n_dies for w in self.wafers)

    @property
    def yield_fraction(self) -> float:
        return sum(int(w.good.sum()) for w in self.wafers) / self.n_dies


def generate_lot(
    product: ProductSpec,
    lot_index: int,
    seed: int,
    wafers: int = 2,
    drift: float = DEFAULT_DRIFT,
    retest_failures: bool = False,
) -> Lot:
    """Generate lot number ``lot_index`` (0-based) of a series: its process is shifted by
    ``drift * lot_index``. With ``retest_failures`` every failing die is probed again at
    the end of its wafer."""
    if not 1 <= wafers <= 25:
        raise ValueError("a lot holds 1 to 25 wafers")
    rng = np.random.default_rng([seed, lot_index])
    lot_id = f"S{seed}-L{lot_index + 1:03d}"
    start_t = _FIRST_LOT_START + lot_index * _LOT_SPACING_S + int(rng.integers(0, 1800))
    setup_t = start_t - int(rng.integers(300, 900))
    tester = TESTERS[int(rng.integers(len(TESTERS)))]
    process_shift = drift * lot_index
    grid = die_grid(product.dies_across, product.site_layout)
    made: list[Wafer] = []
    wafer_start, parts_before = start_t, 0
    for number in range(1, wafers + 1):
        wafer_rng = np.random.default_rng([seed, lot_index, number])
        wafer = _generate_wafer(
            product,
            grid,
            wafer_rng,
            process_shift,
            wafer_id=f"{lot_id}-{number:02d}",
            start_t=wafer_start,
            first_part_id=parts_before + 1,
        )
        if retest_failures:  # drawn after the first pass: that stays as without retests
            wafer = replace(wafer, retests=_retest_failures(product, wafer, wafer_rng))
        made.append(wafer)
        wafer_start, parts_before = wafer.end_t + _WAFER_LOAD_S, parts_before + wafer.n_parts
    return Lot(
        product=product,
        lot_id=lot_id,
        lot_index=lot_index,
        seed=seed,
        process_shift=process_shift,
        tester=tester,
        setup_t=setup_t,
        start_t=start_t,
        finish_t=made[-1].end_t + 30,
        wafers=tuple(made),
    )


def outside_limits(test: LimitedTest, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(below the low limit, above the high limit), compared in float32 like a reader would."""
    lo, hi = test.limits32()
    return values < lo, values > hi


def failing_dies(test: AnyTest, results: np.ndarray) -> np.ndarray:
    """Which dies fail the test, given its entry of ``Wafer.results``."""
    if isinstance(test, FunctionalTest):
        return ~results
    below, above = outside_limits(test, results)
    failed = below | above
    return failed.reshape(len(results), -1).any(axis=1)


def _generate_wafer(
    product: ProductSpec,
    grid: DieGrid,
    rng: np.random.Generator,
    process_shift: float,
    *,
    wafer_id: str,
    start_t: int,
    first_part_id: int,
) -> Wafer:
    edge, defectivity, process = _latent_causes(product.defects, grid, rng, process_shift)
    return _test_dies(
        product,
        rng,
        wafer_id=wafer_id,
        start_t=start_t,
        first_part_id=first_part_id,
        x=grid.x,
        y=grid.y,
        site=grid.site,
        touchdown=grid.touchdown,
        edge=edge,
        defectivity=defectivity,
        process=process,
    )


def _retest_failures(product: ProductSpec, wafer: Wafer, rng: np.random.Generator) -> Wafer | None:
    """The wafer's failing dies probed once more, one touchdown each, on the same site."""
    failing = np.flatnonzero(~wafer.good)
    if not len(failing):
        return None
    placed = ("x", "y", "site", "edge", "defectivity", "process")
    return _test_dies(
        product,
        rng,
        wafer_id=wafer.wafer_id,
        start_t=wafer.finish_t,
        first_part_id=int(wafer.part_id[-1]) + 1,
        touchdown=np.arange(len(failing)),
        **{name: getattr(wafer, name)[failing] for name in placed},
    )


def _test_dies(
    product: ProductSpec,
    rng: np.random.Generator,
    *,
    wafer_id: str,
    start_t: int,
    first_part_id: int,
    x: np.ndarray,
    y: np.ndarray,
    site: np.ndarray,
    touchdown: np.ndarray,
    edge: np.ndarray,
    defectivity: np.ndarray,
    process: np.ndarray,
) -> Wafer:
    """Run the flow on dies placed on a wafer, with their latent causes, touchdown by
    touchdown."""
    results: dict[int, np.ndarray] = {}
    failed = np.zeros((len(x), len(product.tests)), dtype=bool)
    for k, test in enumerate(product.tests):
        results[test.test_num] = _measure(test, rng, site, edge, defectivity, process)
        failed[:, k] = failing_dies(test, results[test.test_num])
    hard_bin, soft_bin, num_tests = _bin(product, failed)
    test_time_ms = _test_times(product, num_tests, rng)
    touchdown_starts = np.flatnonzero(np.diff(touchdown, prepend=-1))
    duration_ms = int((np.maximum.reduceat(test_time_ms, touchdown_starts) + _INDEX_MS).sum())
    return Wafer(
        wafer_id=wafer_id,
        start_t=start_t,
        finish_t=start_t + duration_ms // 1000,
        x=x,
        y=y,
        site=site,
        touchdown=touchdown,
        part_id=np.arange(first_part_id, first_part_id + len(x), dtype=np.uint32),
        hard_bin=hard_bin,
        soft_bin=soft_bin,
        good=np.isin(hard_bin, list(product.good_bins)),
        num_tests=num_tests,
        test_time_ms=test_time_ms,
        results=results,
        edge=edge,
        defectivity=defectivity,
        process=process,
    )


def _latent_causes(
    model: DefectModel, grid: DieGrid, rng: np.random.Generator, process_shift: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    n = len(grid.x)
    r = np.hypot(grid.x, grid.y) / grid.radius
    edge = np.clip((r - model.edge_onset) / (1 - model.edge_onset), 0, 1)
    defectivity = rng.exponential(model.background, n)
    isolated = rng.random(n) < model.random_defect_rate
    defectivity += np.where(isolated, rng.exponential(1.5, n), 0.0)
    defectivity += _cluster_defectivity(model, grid, rng)
    process = (
        process_shift
        + rng.normal(0, model.wafer_process_sd)
        + model.process_bowl * r**2
        + rng.normal(0, model.die_process_sd, n)
    )
    return edge, defectivity, process


def _cluster_defectivity(model: DefectModel, grid: DieGrid, rng: np.random.Generator) -> np.ndarray:
    count = rng.poisson(model.clusters_per_wafer)
    distance = grid.radius * np.sqrt(rng.random(count))  # uniform over the wafer's area
    angle = rng.uniform(0, 2 * np.pi, count)
    size = rng.uniform(*model.cluster_radius, count)
    strength = rng.uniform(*model.cluster_strength, count)
    dx = grid.x[:, None] - distance * np.cos(angle)
    dy = grid.y[:, None] - distance * np.sin(angle)
    return (strength * np.exp(-(dx**2 + dy**2) / size**2)).sum(axis=1)


def _measure(
    test: AnyTest,
    rng: np.random.Generator,
    site: np.ndarray,
    edge: np.ndarray,
    defectivity: np.ndarray,
    process: np.ndarray,
) -> np.ndarray:
    """The test's results, as stored in ``Wafer.results``."""
    n = len(site)
    if isinstance(test, FunctionalTest):
        p_fail = 1 - (1 - test.base_fail) * np.exp(-test.defect_kill * defectivity)
        return rng.random(n) >= p_fail
    shift = (
        test.edge_gain * edge
        + test.defect_gain * defectivity
        + test.process_gain * process
        + test.site_gain * site
    )
    if isinstance(test, MultiPinTest):
        return _pin_readings(test, shift, rng)
    return test.draw(rng.standard_normal(n), shift)


def _pin_readings(test: MultiPinTest, shift: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Per-pin readings, every pin of a die shifted alike; a faulty die has one pin open or
    shorted."""
    n = len(shift)
    values = test.draw(rng.standard_normal((n, len(test.pins))), shift[:, None])
    faulty = np.flatnonzero(rng.random(n) < test.fault_rate)
    pin = rng.integers(0, len(test.pins), len(faulty))
    opened = rng.random(len(faulty)) < 0.5
    values[faulty, pin] = np.where(opened, test.open_value, test.short_value)
    return values


def _bin(product: ProductSpec, failed: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Hard bin, soft bin and tests executed, from the first label-defining test failed."""
    n_tests = len(product.tests)
    binning = failed & np.array([t.label_defining for t in product.tests])
    first = np.where(binning.any(axis=1), binning.argmax(axis=1), n_tests)
    good_bin = min(product.good_bins)
    # Index n_tests stands for "passed everything".
    hard = [t.hard_bin or 0 for t in product.tests] + [good_bin]
    soft = [t.soft_bin or 0 for t in product.tests] + [PASS_SOFT_BIN.number]
    executed = (
        np.minimum(first + 1, n_tests) if product.stop_on_fail else np.full_like(first, n_tests)
    )
    return (
        np.array(hard, dtype=np.uint16)[first],
        np.array(soft, dtype=np.uint16)[first],
        executed.astype(np.uint16),
    )


def _test_times(
    product: ProductSpec, num_tests: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """Per-part test time: the tests it ran, a little jitter and a fixed overhead."""
    elapsed = np.cumsum([t.time_ms for t in product.tests])[num_tests - 1]
    jitter = 1 + 0.03 * rng.standard_normal(len(num_tests))
    return np.round(elapsed * jitter + _PART_OVERHEAD_MS).astype(np.uint32)
