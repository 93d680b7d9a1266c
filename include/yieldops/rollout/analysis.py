"""The statistical judgement of one rollout step: challenger against champion, same window.

Each check takes plain arrays (or counts) of the two versions' samples and returns a
:class:`Check` with a verdict, the numbers behind it and one readable reason. :func:`judge`
folds the checks into the step's verdict.

Rules shared by the comparative checks (error rate, latency, accuracy):

- inconclusive while either side has fewer than ``min_samples`` samples (no evidence yet);
- fail when the challenger is significantly worse (one-sided test at ``alpha``) *and* worse
  by more than the practical tolerance: with enough traffic any tiny difference becomes
  significant, and a difference that is not significant may be noise;
- inconclusive when the challenger looks worse than the tolerance but the test cannot yet
  tell it from noise: more samples will decide, so the step waits instead of passing;
- pass otherwise.

Shift and agreement are guards rather than tests: shift fails on the PSI alone (the KS test
is reported, but on thousands of samples it flags differences too small to matter), and
agreement fails on the observed share of identical answers.

An inconclusive step is one of two things, told apart because they end differently: *no
evidence* (every undecided check lacks samples: nothing says the challenger is worse, so
a step that runs out of time with none is aborted, never a rejection) or *undecided* (a
check saw the challenger worse beyond its tolerance, not yet significantly: running out of
time then counts as a failure).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum

import numpy as np
from numpy.typing import ArrayLike
from scipy import stats

from .thresholds import Thresholds


class Verdict(str, Enum):
    PASS = "pass"
    FAIL = "fail"
    INCONCLUSIVE = "inconclusive"


DEFAULTS = Thresholds()

# A bin one version never hit would make the PSI infinite.
PSI_EPSILON = 1e-6


@dataclass(frozen=True)
class Check:
    """One check's verdict; ``numbers`` holds sample sizes, statistics and thresholds."""

    name: str
    verdict: Verdict
    numbers: dict[str, float] = field(default_factory=dict)
    reason: str = ""
    # Inconclusive for want of samples, not because the test could not decide.
    too_few_samples: bool = False

    def to_dict(self) -> dict:
        numbers = {key: _json_number(value) for key, value in self.numbers.items()}
        return {
            "name": self.name,
            "verdict": self.verdict.value,
            "numbers": numbers,
            "reason": self.reason,
            "too_few_samples": self.too_few_samples,
        }


@dataclass(frozen=True)
class StepVerdict:
    verdict: Verdict
    checks: list[Check]
    summary: str
    # Inconclusive only because checks lack samples: no evidence either way.
    no_evidence: bool = False

    def to_dict(self) -> dict:
        return {
            "verdict": self.verdict.value,
            "no_evidence": self.no_evidence,
            "summary": self.summary,
            "checks": [check.to_dict() for check in self.checks],
        }


TOO_FEW = "too few samples"


def judge(checks: Sequence[Check]) -> StepVerdict:
    """Fail if any check fails, inconclusive if any is inconclusive, pass otherwise; an
    inconclusive step whose undecided checks all lack samples has no evidence."""
    if not checks:
        raise ValueError("judge needs at least one check")
    groups: dict[str, list[str]] = {v.value: [] for v in Verdict}
    groups[TOO_FEW] = []
    for check in checks:
        groups[TOO_FEW if check.too_few_samples else check.verdict.value].append(check.name)
    undecided = groups[Verdict.INCONCLUSIVE.value]
    if groups[Verdict.FAIL.value]:
        verdict = Verdict.FAIL
    elif undecided or groups[TOO_FEW]:
        verdict = Verdict.INCONCLUSIVE
    else:
        verdict = Verdict.PASS
    no_evidence = verdict is Verdict.INCONCLUSIVE and not undecided
    # Worst first, so the reason for the verdict leads the summary.
    order = (Verdict.FAIL.value, Verdict.INCONCLUSIVE.value, TOO_FEW, Verdict.PASS.value)
    parts = "; ".join(f"{group}: {', '.join(groups[group])}" for group in order if groups[group])
    headline = "inconclusive, no evidence" if no_evidence else verdict.value
    return StepVerdict(verdict, list(checks), f"{headline} ({parts})", no_evidence)


def error_rate_check(
    champion_errors: int,
    champion_total: int,
    challenger_errors: int,
    challenger_total: int,
    *,
    min_samples: int = DEFAULTS.min_samples,
    alpha: float = DEFAULTS.alpha,
    max_increase: float = DEFAULTS.max_error_increase,
) -> Check:
    """Two-proportion z-test (pooled), one-sided: is the challenger's error rate higher?"""
    _check_counts(champion_errors, champion_total)
    _check_counts(challenger_errors, challenger_total)
    name = "error_rate"
    sizes = {"champion_n": champion_total, "challenger_n": challenger_total}
    if min(champion_total, challenger_total) < min_samples:
        return _too_few(name, sizes, min_samples)
    champion_rate = champion_errors / champion_total
    challenger_rate = challenger_errors / challenger_total
    pooled = (champion_errors + challenger_errors) / (champion_total + challenger_total)
    std_error = math.sqrt(pooled * (1 - pooled) * (1 / champion_total + 1 / challenger_total))
    increase = challenger_rate - champion_rate
    # No error (or only errors) on both sides: no difference to test.
    z = increase / std_error if std_error > 0 else 0.0
    p_value = float(stats.norm.sf(z))
    numbers = {
        **sizes,
        "champion_rate": champion_rate,
        "challenger_rate": challenger_rate,
        "increase": increase,
        "z": z,
        "p_value": p_value,
        "alpha": alpha,
        "max_increase": max_increase,
    }
    observed = (
        f"error rate {challenger_rate:.2%} vs champion {champion_rate:.2%} "
        f"(+{increase:.2%}, tolerance {max_increase:.2%}, p={p_value:.3g})"
    )
    verdict = _compare(p_value < alpha, increase, max_increase)
    return Check(name, verdict, numbers, f"{observed}: {_explain(verdict)}")


def latency_check(
    champion_ms: ArrayLike,
    challenger_ms: ArrayLike,
    *,
    min_samples: int = DEFAULTS.min_samples,
    alpha: float = DEFAULTS.alpha,
    p95_limit_ms: float = DEFAULTS.p95_limit_ms,
    max_increase: float = DEFAULTS.max_latency_increase,
    min_increase_ms: float = DEFAULTS.min_latency_increase_ms,
) -> Check:
    """Absolute p95 limit, then Mann-Whitney U (challenger slower) with a practical margin.

    Fails when the challenger's p95 exceeds ``p95_limit_ms``; otherwise compares like the
    other comparative checks, the practical margin being the relative increase of the
    median latency over ``max_increase``, or over ``min_increase_ms`` when that is larger.
    """
    champion = _samples(champion_ms)
    challenger = _samples(challenger_ms)
    name = "latency"
    sizes = {"champion_n": champion.size, "challenger_n": challenger.size}
    if min(champion.size, challenger.size) < min_samples:
        return _too_few(name, sizes, min_samples)
    champion_median = float(np.median(champion))
    challenger_median = float(np.median(challenger))
    challenger_p95 = float(np.percentile(challenger, 95))
    # A zero median is a clock artefact, not a speed: no relative change to speak of.
    increase = challenger_median / champion_median - 1 if champion_median > 0 else 0.0
    tolerance = max(max_increase, min_increase_ms / champion_median) if champion_median > 0 else 0.0
    test = stats.mannwhitneyu(challenger, champion, alternative="greater")
    p_value = float(test.pvalue)
    numbers = {
        **sizes,
        "champion_median_ms": champion_median,
        "challenger_median_ms": challenger_median,
        "champion_p95_ms": float(np.percentile(champion, 95)),
        "challenger_p95_ms": challenger_p95,
        "median_increase": increase,
        "u": float(test.statistic),
        "p_value": p_value,
        "alpha": alpha,
        "p95_limit_ms": p95_limit_ms,
        "max_increase": max_increase,
        "min_increase_ms": min_increase_ms,
        "tolerance": tolerance,
    }
    if challenger_p95 > p95_limit_ms:
        reason = f"challenger p95 {challenger_p95:.1f} ms over the limit {p95_limit_ms:.1f} ms"
        return Check(name, Verdict.FAIL, numbers, reason)
    observed = (
        f"median latency {challenger_median:.1f} ms vs champion {champion_median:.1f} ms "
        f"({increase:+.1%}, tolerance {tolerance:.0%}, p={p_value:.3g}), "
        f"p95 {challenger_p95:.1f} ms within {p95_limit_ms:.1f} ms"
    )
    verdict = _compare(p_value < alpha, increase, tolerance)
    return Check(name, verdict, numbers, f"{observed}: {_explain(verdict)}")


def accuracy_check(
    labels: ArrayLike,
    champion_pred: ArrayLike,
    challenger_pred: ArrayLike,
    *,
    min_samples: int = DEFAULTS.min_samples,
    alpha: float = DEFAULTS.alpha,
    max_drop: float = DEFAULTS.max_accuracy_drop,
) -> Check:
    """Paired accuracy on the same labelled dies: exact McNemar test, one-sided.

    Only the discordant dies carry information: under "equally accurate" a die one model
    gets right and the other wrong is the champion's win with probability 1/2.
    """
    truth, champion, challenger = _paired(labels, champion_pred, challenger_pred)
    name = "accuracy"
    sizes = {"labelled_n": truth.size}
    if truth.size < min_samples:
        return _too_few(name, sizes, min_samples)
    champion_right = champion == truth
    challenger_right = challenger == truth
    champion_only = int(np.sum(champion_right & ~challenger_right))
    challenger_only = int(np.sum(challenger_right & ~champion_right))
    discordant = champion_only + challenger_only
    p_value = (
        float(stats.binomtest(champion_only, discordant, 0.5, alternative="greater").pvalue)
        if discordant
        else 1.0
    )
    champion_accuracy = float(champion_right.mean())
    challenger_accuracy = float(challenger_right.mean())
    drop = (champion_only - challenger_only) / truth.size
    numbers = {
        **sizes,
        "champion_accuracy": champion_accuracy,
        "challenger_accuracy": challenger_accuracy,
        "drop": drop,
        "champion_only_right": champion_only,
        "challenger_only_right": challenger_only,
        "p_value": p_value,
        "alpha": alpha,
        "max_drop": max_drop,
    }
    observed = (
        f"accuracy {challenger_accuracy:.2%} vs champion {champion_accuracy:.2%} "
        f"on {truth.size} labelled dies (drop {drop:.2%}, tolerance {max_drop:.2%}, "
        f"p={p_value:.3g})"
    )
    verdict = _compare(p_value < alpha, drop, max_drop)
    return Check(name, verdict, numbers, f"{observed}: {_explain(verdict)}")


def shift_check(
    champion_prob: ArrayLike,
    challenger_prob: ArrayLike,
    *,
    min_samples: int = DEFAULTS.min_samples,
    ks_alpha: float = DEFAULTS.alpha,
    psi_limit: float = DEFAULTS.psi_limit,
) -> Check:
    """Prediction-distribution shift: fails when the shift is both large, PSI over
    ``psi_limit``, and real, the KS test's p-value under ``ks_alpha``. PSI alone is biased
    upwards on small samples (a canary step's few dozen dies can read 0.2 between two draws
    of one distribution); KS alone finds negligible shifts on large ones."""
    champion = _samples(champion_prob)
    challenger = _samples(challenger_prob)
    name = "shift"
    sizes = {"champion_n": champion.size, "challenger_n": challenger.size}
    if min(champion.size, challenger.size) < min_samples:
        return _too_few(name, sizes, min_samples)
    stability = psi(champion, challenger)
    ks = stats.ks_2samp(champion, challenger)
    numbers = {
        **sizes,
        "psi": stability,
        "psi_limit": psi_limit,
        "ks": float(ks.statistic),
        "ks_p_value": float(ks.pvalue),
        "ks_alpha": ks_alpha,
    }
    ks_says = "differ" if ks.pvalue < ks_alpha else "do not differ"
    ks_note = f"KS D={ks.statistic:.3f}, p={ks.pvalue:.3g}: distributions {ks_says}"
    if stability > psi_limit and ks.pvalue < ks_alpha:
        reason = f"PSI {stability:.3f} over the limit {psi_limit:.3f} ({ks_note})"
        return Check(name, Verdict.FAIL, numbers, reason)
    if stability > psi_limit:
        reason = (
            f"PSI {stability:.3f} over {psi_limit:.3f} but not significant on "
            f"{min(champion.size, challenger.size)} dies ({ks_note})"
        )
        return Check(name, Verdict.PASS, numbers, reason)
    reason = f"PSI {stability:.3f} within {psi_limit:.3f} ({ks_note})"
    return Check(name, Verdict.PASS, numbers, reason)


def agreement_check(
    champion_pred: ArrayLike,
    challenger_pred: ArrayLike,
    *,
    min_samples: int = DEFAULTS.min_samples,
    min_agreement: float = DEFAULTS.min_agreement,
) -> Check:
    """Share of dies where both versions gave the same good/bad answer (shadow traffic)."""
    champion, challenger = _paired(champion_pred, challenger_pred)
    name = "agreement"
    sizes = {"paired_n": champion.size}
    if champion.size < min_samples:
        return _too_few(name, sizes, min_samples)
    agreement = float(np.mean(champion == challenger))
    numbers = {**sizes, "agreement": agreement, "min_agreement": min_agreement}
    if agreement < min_agreement:
        reason = f"agreement {agreement:.2%} below the minimum {min_agreement:.2%}"
        return Check(name, Verdict.FAIL, numbers, reason)
    reason = f"agreement {agreement:.2%} at or above {min_agreement:.2%}"
    return Check(name, Verdict.PASS, numbers, reason)


def psi(expected: ArrayLike, actual: ArrayLike, bins: int = 10) -> float:
    """Population Stability Index of ``actual`` against ``expected``.

    Bins are quantiles of ``expected`` (fewer when its values tie, e.g. many 1.0
    probabilities); the outer bins are open so values outside its range still count.
    """
    expected = _samples(expected)
    actual = _samples(actual)
    if not (expected.size and actual.size):
        raise ValueError("psi needs at least one value on each side")
    inner_edges = np.unique(np.quantile(expected, np.linspace(0, 1, bins + 1)[1:-1]))
    expected_share = _bin_shares(expected, inner_edges)
    actual_share = _bin_shares(actual, inner_edges)
    return float(np.sum((actual_share - expected_share) * np.log(actual_share / expected_share)))


def _bin_shares(values: np.ndarray, inner_edges: np.ndarray) -> np.ndarray:
    bin_index = np.searchsorted(inner_edges, values, side="right")
    counts = np.bincount(bin_index, minlength=inner_edges.size + 1)
    return np.maximum(counts / values.size, PSI_EPSILON)


def _compare(significant: bool, worsening: float, tolerance: float) -> Verdict:
    # 0.011 - 0.001 is 0.01 give or take a rounding error: a value on the bound passes.
    if worsening <= tolerance + 1e-12:
        return Verdict.PASS
    return Verdict.FAIL if significant else Verdict.INCONCLUSIVE


def _explain(verdict: Verdict) -> str:
    return {
        Verdict.FAIL: "significantly worse beyond the tolerance",
        Verdict.INCONCLUSIVE: "worse beyond the tolerance but not yet significant",
        Verdict.PASS: "within the tolerance",
    }[verdict]


def _too_few(name: str, sizes: Mapping[str, float], min_samples: int) -> Check:
    counts = ", ".join(f"{key} {int(value)}" for key, value in sizes.items())
    reason = f"{TOO_FEW} ({counts}; need {min_samples} each)"
    numbers = {**sizes, "min_samples": min_samples}
    return Check(name, Verdict.INCONCLUSIVE, numbers, reason, too_few_samples=True)


def _check_counts(errors: int, total: int) -> None:
    if not 0 <= errors <= total:
        raise ValueError(f"errors must be between 0 and the total: {errors} of {total}")


def _samples(values: ArrayLike) -> np.ndarray:
    array = np.asarray(values, dtype=float).ravel()
    if np.isnan(array).any():
        raise ValueError("samples contain NaN; drop failed requests before analysis")
    return array


def _paired(*arrays: ArrayLike) -> tuple[np.ndarray, ...]:
    """Arrays of answers for the same dies, in the same order."""
    paired = tuple(np.asarray(a).ravel() for a in arrays)
    if len({a.size for a in paired}) > 1:
        raise ValueError(f"paired arrays differ in length: {[a.size for a in paired]}")
    return paired


def _json_number(value: float) -> float | int | None:
    """Python numbers for JSON; NaN and infinity become None."""
    if isinstance(value, (int, np.integer)):
        return int(value)
    value = float(value)
    return value if math.isfinite(value) else None
