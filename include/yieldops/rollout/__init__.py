"""Rollout of a challenger: the statistical judgement of each step (no Airflow here).

>>> checks = [error_rate_check(3, 1000, 4, 1000), agreement_check(champ, chall)]  # doctest: +SKIP
>>> step = judge(checks)  # doctest: +SKIP
>>> step.verdict, step.to_dict()  # doctest: +SKIP
"""

from .analysis import (
    DEFAULTS,
    Check,
    StepVerdict,
    Thresholds,
    Verdict,
    accuracy_check,
    agreement_check,
    error_rate_check,
    judge,
    latency_check,
    psi,
    shift_check,
)

__all__ = [
    "DEFAULTS",
    "Check",
    "StepVerdict",
    "Thresholds",
    "Verdict",
    "accuracy_check",
    "agreement_check",
    "error_rate_check",
    "judge",
    "latency_check",
    "psi",
    "shift_check",
]
