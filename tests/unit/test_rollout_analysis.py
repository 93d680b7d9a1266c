"""The statistical judgement of a rollout step, on seeded synthetic samples."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from yieldops.rollout.analysis import (
    Check,
    Verdict,
    accuracy_check,
    agreement_check,
    error_rate_check,
    judge,
    latency_check,
    psi,
    shift_check,
)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(20261126)


def latencies(rng: np.random.Generator, n: int, median_ms: float) -> np.ndarray:
    return rng.lognormal(mean=math.log(median_ms), sigma=0.3, size=n)


def probabilities(rng: np.random.Generator, n: int, a: float = 8.0, b: float = 2.0):
    return rng.beta(a, b, size=n)


def predictions_with_accuracy(rng, labels: np.ndarray, accuracy: float) -> np.ndarray:
    wrong = rng.random(labels.size) > accuracy
    return np.where(wrong, 1 - labels, labels)


# --- error rate ---------------------------------------------------------------------------


def test_error_rate_equal_rates_pass():
    check = error_rate_check(20, 2000, 22, 2000)
    assert check.verdict is Verdict.PASS
    assert check.numbers["p_value"] > 0.01


def test_error_rate_clearly_worse_fails():
    check = error_rate_check(20, 2000, 120, 2000)
    assert check.verdict is Verdict.FAIL
    assert "significantly worse" in check.reason
    assert check.numbers["increase"] == pytest.approx(0.05)
    assert check.numbers["p_value"] < 1e-6


def test_error_rate_significant_but_within_tolerance_passes():
    check = error_rate_check(1000, 100_000, 1400, 100_000, max_increase=0.01)
    assert check.numbers["p_value"] < 0.01
    assert check.verdict is Verdict.PASS


def test_error_rate_worse_but_not_significant_is_inconclusive():
    check = error_rate_check(4, 200, 9, 200)
    assert check.numbers["increase"] > 0.01
    assert check.verdict is Verdict.INCONCLUSIVE
    assert "not yet significant" in check.reason


def test_error_rate_too_few_samples_is_inconclusive():
    check = error_rate_check(0, 150, 100, 150)
    assert check.verdict is Verdict.INCONCLUSIVE
    assert "too few samples" in check.reason


def test_error_rate_increase_on_the_tolerance_passes():
    # 29/2000 - 9/2000 is a hair above 0.01 in floating point, and significant
    check = error_rate_check(9, 2000, 29, 2000)
    assert check.numbers["p_value"] < 0.01
    assert check.verdict is Verdict.PASS


def test_accuracy_drop_on_the_tolerance_passes(rng):
    labels = rng.integers(0, 2, 2000)
    challenger = labels.copy()
    challenger[:20] = 1 - challenger[:20]  # 20 of 2000 wrong: exactly one point
    assert accuracy_check(labels, labels, challenger).verdict is Verdict.PASS


def test_error_rate_no_errors_at_all_passes():
    assert error_rate_check(0, 500, 0, 500).verdict is Verdict.PASS


def test_error_rate_rejects_impossible_counts():
    with pytest.raises(ValueError, match="between 0 and the total"):
        error_rate_check(11, 10, 0, 10)


# --- latency ------------------------------------------------------------------------------


def test_latency_same_distribution_passes(rng):
    check = latency_check(latencies(rng, 1000, 40), latencies(rng, 1000, 40))
    assert check.verdict is Verdict.PASS


def test_latency_p95_over_limit_fails(rng):
    check = latency_check(latencies(rng, 500, 40), latencies(rng, 500, 300))
    assert check.verdict is Verdict.FAIL
    assert "p95" in check.reason and "over the limit" in check.reason


def test_latency_significantly_slower_fails_within_p95_limit(rng):
    check = latency_check(latencies(rng, 1000, 40), latencies(rng, 1000, 60))
    assert check.numbers["challenger_p95_ms"] < 250
    assert check.verdict is Verdict.FAIL
    assert "significantly worse" in check.reason


def test_latency_slightly_slower_passes(rng):
    check = latency_check(latencies(rng, 5000, 40), latencies(rng, 5000, 42))
    assert check.numbers["p_value"] < 0.01  # significant, but under the 10 % margin
    assert check.verdict is Verdict.PASS


def test_latency_a_few_milliseconds_more_on_a_fast_model_passes(rng):
    check = latency_check(latencies(rng, 2000, 4), latencies(rng, 2000, 5))
    assert check.numbers["median_increase"] > 0.1 and check.numbers["p_value"] < 0.01
    assert check.verdict is Verdict.PASS  # +1 ms is within the 5 ms floor
    slower = latency_check(latencies(rng, 2000, 4), latencies(rng, 2000, 12))
    assert slower.verdict is Verdict.FAIL


def test_latency_too_few_samples_is_inconclusive(rng):
    check = latency_check(latencies(rng, 50, 40), latencies(rng, 50, 400))
    assert check.verdict is Verdict.INCONCLUSIVE


# --- accuracy -----------------------------------------------------------------------------


def test_accuracy_equal_models_pass(rng):
    labels = rng.integers(0, 2, 5000)
    champion = predictions_with_accuracy(rng, labels, 0.9)
    challenger = predictions_with_accuracy(rng, labels, 0.9)
    assert accuracy_check(labels, champion, challenger).verdict is Verdict.PASS


def test_accuracy_clearly_worse_fails(rng):
    labels = rng.integers(0, 2, 2000)
    champion = predictions_with_accuracy(rng, labels, 0.95)
    challenger = predictions_with_accuracy(rng, labels, 0.85)
    check = accuracy_check(labels, champion, challenger)
    assert check.verdict is Verdict.FAIL
    assert check.numbers["drop"] > 0.05
    assert "significantly worse" in check.reason


def test_accuracy_identical_predictions_pass_without_discordant_dies(rng):
    labels = rng.integers(0, 2, 300)
    predictions = predictions_with_accuracy(rng, labels, 0.9)
    check = accuracy_check(labels, predictions, predictions.copy())
    assert check.verdict is Verdict.PASS
    assert check.numbers["p_value"] == 1.0


def test_accuracy_too_few_labelled_dies_is_inconclusive(rng):
    labels = rng.integers(0, 2, 100)
    check = accuracy_check(labels, labels, 1 - labels)
    assert check.verdict is Verdict.INCONCLUSIVE


def test_accuracy_rejects_unpaired_arrays():
    with pytest.raises(ValueError, match="differ in length"):
        accuracy_check([1, 0], [1, 0], [1])


# --- shift and PSI ------------------------------------------------------------------------


def test_psi_of_identical_samples_is_zero(rng):
    sample = probabilities(rng, 2000)
    assert psi(sample, sample) == pytest.approx(0.0, abs=1e-12)


def test_psi_of_samples_from_the_same_distribution_is_small(rng):
    assert psi(probabilities(rng, 5000), probabilities(rng, 5000)) < 0.02


def test_psi_of_shifted_samples_is_large(rng):
    assert psi(probabilities(rng, 5000), probabilities(rng, 5000, a=4, b=4)) > 0.2


def test_psi_survives_tied_values_and_values_outside_the_range(rng):
    expected = np.concatenate([np.ones(900), probabilities(rng, 100)])
    value = psi(expected, probabilities(rng, 1000, a=1, b=1) - 1.0)
    assert math.isfinite(value) and value > 0.2


def test_shift_same_distribution_passes(rng):
    check = shift_check(probabilities(rng, 2000), probabilities(rng, 2000))
    assert check.verdict is Verdict.PASS
    assert "KS" in check.reason


def test_shift_shifted_distribution_fails_and_reports_ks(rng):
    check = shift_check(probabilities(rng, 2000), probabilities(rng, 2000, a=4, b=4))
    assert check.verdict is Verdict.FAIL
    assert "PSI" in check.reason and "over the limit" in check.reason
    assert "distributions differ" in check.reason
    assert check.numbers["ks_p_value"] < 0.01


def test_a_large_psi_of_a_small_sample_is_not_a_shift_unless_significant(rng):
    """A canary step's few dozen dies: PSI of two draws of one distribution is over the
    limit most of the time (it is biased upwards on small samples); the check fails about
    as often as its KS test's alpha, and a real shift of that size still fails."""
    same = [shift_check(probabilities(rng, 70), probabilities(rng, 70), min_samples=60)
            for _ in range(200)]  # fmt: skip
    noisy = [c for c in same if c.numbers["psi"] > 0.2]
    assert len(noisy) > 100  # PSI alone would have rejected a good model more often than not
    assert sum(c.verdict is Verdict.FAIL for c in same) <= 6  # alpha 0.01: about 2 of 200
    passed = [c for c in noisy if c.verdict is Verdict.PASS]
    assert passed and all("not significant on 70 dies" in c.reason for c in passed)
    shifted = shift_check(probabilities(rng, 70), probabilities(rng, 70, a=2, b=2), min_samples=60)
    assert shifted.verdict is Verdict.FAIL and shifted.numbers["ks_p_value"] < 0.01


def test_shift_too_few_samples_is_inconclusive(rng):
    check = shift_check(probabilities(rng, 2000), probabilities(rng, 20, a=1, b=9))
    assert check.verdict is Verdict.INCONCLUSIVE


# --- agreement ----------------------------------------------------------------------------


def test_agreement_high_passes(rng):
    champion = rng.integers(0, 2, 1000)
    challenger = np.where(rng.random(1000) < 0.03, 1 - champion, champion)
    assert agreement_check(champion, challenger).verdict is Verdict.PASS


def test_agreement_low_fails(rng):
    champion = rng.integers(0, 2, 1000)
    challenger = np.where(rng.random(1000) < 0.3, 1 - champion, champion)
    check = agreement_check(champion, challenger)
    assert check.verdict is Verdict.FAIL
    assert "below the minimum" in check.reason


def test_agreement_too_few_samples_is_inconclusive():
    assert agreement_check([1] * 10, [0] * 10).verdict is Verdict.INCONCLUSIVE


# --- judge, serialisation, thresholds -----------------------------------------------------


def check_with(name: str, verdict: Verdict) -> Check:
    return Check(name, verdict, {"n": 1}, f"{name} {verdict.value}")


@pytest.mark.parametrize(
    ("verdicts", "expected"),
    [
        ([Verdict.PASS, Verdict.PASS], Verdict.PASS),
        ([Verdict.PASS, Verdict.INCONCLUSIVE], Verdict.INCONCLUSIVE),
        ([Verdict.INCONCLUSIVE, Verdict.FAIL, Verdict.PASS], Verdict.FAIL),
        ([Verdict.FAIL, Verdict.FAIL], Verdict.FAIL),
    ],
)
def test_judge_precedence(verdicts, expected):
    checks = [check_with(f"c{i}", v) for i, v in enumerate(verdicts)]
    step = judge(checks)
    assert step.verdict is expected
    assert step.summary.startswith(expected.value)


def test_judge_summary_names_the_failing_check_first():
    step = judge([check_with("latency", Verdict.PASS), check_with("shift", Verdict.FAIL)])
    assert step.summary == "fail (fail: shift; pass: latency)"


def test_judge_refuses_no_checks():
    with pytest.raises(ValueError, match="at least one"):
        judge([])


def test_to_dict_is_strict_json(rng):
    labels = rng.integers(0, 2, 500)
    step = judge(
        [
            error_rate_check(5, 1000, 6, 1000),
            latency_check(latencies(rng, 500, 40), latencies(rng, 500, 40)),
            accuracy_check(labels, labels, labels),
            shift_check(probabilities(rng, 500), probabilities(rng, 500)),
            agreement_check(labels, labels),
            Check("manual", Verdict.INCONCLUSIVE, {"nan": math.nan, "n": np.int64(3)}, "x"),
        ]
    )
    data = json.loads(json.dumps(step.to_dict(), allow_nan=False))
    assert data["verdict"] == "inconclusive"
    assert data["checks"][-1]["numbers"] == {"nan": None, "n": 3}
    assert [c["name"] for c in data["checks"]][:5] == [
        "error_rate",
        "latency",
        "accuracy",
        "shift",
        "agreement",
    ]
