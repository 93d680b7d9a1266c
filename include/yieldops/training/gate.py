"""The gate: may a challenger be registered? Plain Python over two dicts of holdout metrics.

Absolute checks always run: each gated metric must reach its threshold (at least it, or at
most it for a lower-is-better metric such as log loss). Relative checks run when there is a
champion scored on the same holdout: the challenger may be worse than the champion by at
most the metric's tolerance, in the metric's own units (0.01 accuracy = one point). This is
what ``mlflow.models.MetricThreshold(threshold=..., min_absolute_change=-tolerance,
greater_is_better=...)`` with ``mlflow.validate_evaluation_results`` checks, without needing
MLflow here.

A metric the holdout cannot define (NaN, e.g. ROC AUC of a one-class holdout) fails its
absolute check: a model that cannot be judged is not registered.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field

from ..config import GATE_METRICS, Gate
from .evaluation import NO_SKILL_MODELS, no_skill_key


@dataclass(frozen=True)
class GateResult:
    """``passed`` when every check passed; ``reasons`` has one readable line per check
    (failures first) for the task log and the run note; ``checks`` the same as data."""

    passed: bool
    reasons: list[str] = field(default_factory=list)
    checks: list[dict] = field(default_factory=list)

    def summary(self) -> str:
        verdict = "passed" if self.passed else "failed"
        return f"gate {verdict}:\n" + "\n".join(f"- {line}" for line in self.reasons)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> GateResult:
        return cls(data["passed"], list(data["reasons"]), list(data["checks"]))

    def tags(self) -> dict[str, str]:
        """Flat string tags (e.g. for the registered model version)."""
        tags = {"gate.passed": str(self.passed).lower()}
        for check in self.checks:
            key = f"gate.{check['kind']}.{check['metric']}"
            tags[key] = f"{'pass' if check['passed'] else 'fail'} {_fmt(check['value'])}"
        return tags


def gate(
    challenger: Mapping[str, float],
    champion: Mapping[str, float] | None,
    config: Gate,
) -> GateResult:
    """Judge the challenger's holdout metrics (and the champion's on the same holdout)."""
    checks: list[dict] = []
    for metric, rule in config.metrics.items():
        higher_is_better = GATE_METRICS[metric]
        value = _value(challenger, metric)
        no_skill = _value(challenger, no_skill_key(metric))
        if rule.threshold is not None:
            checks.append(_absolute(metric, value, rule.threshold, higher_is_better, no_skill))
        if rule.min_lift is not None:
            checks.append(_lift(metric, value, no_skill, rule.min_lift, higher_is_better))
        if champion is not None and rule.tolerance is not None:
            baseline = _value(champion, metric)
            checks.append(
                _relative(metric, value, baseline, rule.tolerance, higher_is_better, no_skill)
            )
    note = "no champion: relative checks skipped" if champion is None else None
    passed = all(c["passed"] for c in checks)
    ordered = sorted(checks, key=lambda c: c["passed"])  # failures first
    reasons = [c["reason"] for c in ordered] + ([note] if note else [])
    return GateResult(passed=passed, reasons=reasons, checks=checks)


def _value(metrics: Mapping[str, float], metric: str) -> float:
    value = metrics.get(metric)
    return math.nan if value is None else float(value)


def _no_skill_note(metric: str, no_skill: float) -> str:
    """`no skill 0.7865: always predicting the majority class`, for a reason's brackets."""
    if math.isnan(no_skill):
        return "no-skill baseline unknown"
    return f"no skill {_fmt(no_skill)}: {NO_SKILL_MODELS.get(metric, 'no model')}"


def _absolute(metric: str, value: float, threshold: float, higher: bool, no_skill: float) -> dict:
    sign = ">=" if higher else "<="
    if math.isnan(value):
        passed = False
        reason = f"{metric} is undefined on this holdout; it must be {sign} {_fmt(threshold)}"
    else:
        passed = _at_least(value, threshold) if higher else _at_least(threshold, value)
        verdict = "ok" if passed else "FAIL"
        reason = (
            f"{metric} {_fmt(value)} {sign} {_fmt(threshold)} "
            f"(absolute; {_no_skill_note(metric, no_skill)}): {verdict}"
        )
    return _check("absolute", metric, value, threshold, higher, passed, reason, no_skill)


def _lift(metric: str, value: float, no_skill: float, min_lift: float, higher: bool) -> dict:
    # The worst value still accepted: the no-skill baseline, bettered by min_lift.
    bound = no_skill + min_lift if higher else no_skill - min_lift
    baseline_words = _no_skill_note(metric, no_skill)
    if math.isnan(no_skill):
        passed = True
        reason = f"{metric}: no-skill baseline unknown on this holdout; lift check skipped"
    elif math.isnan(value):
        passed = False
        reason = f"{metric} is undefined on this holdout; it must beat {baseline_words}"
    else:
        passed = _at_least(value, bound) if higher else _at_least(bound, value)
        lift = value - no_skill if higher else no_skill - value
        verdict = "ok" if passed else "FAIL"
        reason = (
            f"{metric} {_fmt(value)} is {_fmt(lift)} better than {baseline_words}; "
            f"needs {_fmt(min_lift)} (lift): {verdict}"
        )
    return _check("lift", metric, value, bound, higher, passed, reason, no_skill, min_lift=min_lift)


def _check(
    kind: str,
    metric: str,
    value: float,
    threshold: float,
    higher: bool,
    passed: bool,
    reason: str,
    no_skill: float,
    *,
    baseline: float | None = None,
    tolerance: float | None = None,
    min_lift: float | None = None,
) -> dict:
    """One check as JSON-ready data (NaN as None)."""
    return {
        "kind": kind,
        "metric": metric,
        "value": _plain(value),
        "threshold": _plain(threshold),
        "baseline": None if baseline is None else _plain(baseline),
        "tolerance": tolerance,
        "min_lift": min_lift,
        "no_skill": _plain(no_skill),
        "higher_is_better": higher,
        "passed": passed,
        "reason": reason,
    }


def _relative(
    metric: str, value: float, baseline: float, tolerance: float, higher: bool, no_skill: float
) -> dict:
    # The worst value still accepted: the champion's, give or take the tolerance.
    bound = baseline - tolerance if higher else baseline + tolerance
    sign = ">=" if higher else "<="
    if math.isnan(baseline):
        passed = True
        reason = f"{metric}: the champion has no value on this holdout; relative check skipped"
    elif math.isnan(value):
        passed = False
        reason = f"{metric} is undefined for the challenger; the champion has {_fmt(baseline)}"
    else:
        passed = _at_least(value, bound) if higher else _at_least(bound, value)
        verdict = "ok" if passed else "FAIL"
        reason = (
            f"{metric} {_fmt(value)} {sign} {_fmt(bound)} "
            f"(champion {_fmt(baseline)} {'-' if higher else '+'} tolerance {_fmt(tolerance)}; "
            f"{_no_skill_note(metric, no_skill)}): {verdict}"
        )
    return _check(
        "relative", metric, value, bound, higher, passed, reason, no_skill,
        baseline=baseline, tolerance=tolerance,
    )  # fmt: skip


def _at_least(value: float, bound: float) -> bool:
    # 0.9 - 0.01 is 0.89 give or take a rounding error: a value on the bound passes.
    return value >= bound - 1e-12


def _plain(value: float) -> float | None:
    """NaN as None, so a check is JSON as it is."""
    return None if math.isnan(value) else value


def _fmt(value: float | None) -> str:
    if value is None or math.isnan(value):
        return "n/a"
    return f"{value:.4f}"
