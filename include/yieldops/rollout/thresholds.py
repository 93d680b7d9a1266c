"""The thresholds of a rollout step's analysis, each declared once: its default, its range
and what it means. The library checks overrides against that declaration
(:meth:`Thresholds.with_overrides`) and ``model_rollout``'s trigger form gets its JSON schema
from it (:func:`thresholds_schema`), so Airflow refuses a bad value when a run is
triggered, not after a step ran.

No numpy or scipy here: DAG files import this at parse time.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import Field, dataclass, field, fields, replace
from typing import Any

# Range keywords as JSON Schema spells them: the form's schema copies them as they are.
LIMITS = {
    "minimum": (lambda value, bound: value >= bound, "at least"),
    "maximum": (lambda value, bound: value <= bound, "at most"),
    "exclusiveMinimum": (lambda value, bound: value > bound, "over"),
    "exclusiveMaximum": (lambda value, bound: value < bound, "under"),
}


def _threshold(default: float, description: str, **limits: float) -> Any:
    """A field of :class:`Thresholds` with its range (keywords of ``LIMITS``)."""
    unknown = set(limits) - set(LIMITS)
    if unknown:
        raise TypeError(f"unknown range keyword(s): {', '.join(sorted(unknown))}")
    return field(default=default, metadata={"description": description, "limits": limits})


@dataclass(frozen=True)
class Thresholds:
    """Defaults of every check of a step's analysis; the trigger form overrides them by name."""

    min_samples: int = _threshold(
        200, "Samples per version (and labelled dies for accuracy) before any verdict.", minimum=1
    )
    alpha: float = _threshold(
        0.01,
        "Significance level of the one-sided tests and the KS test.",
        exclusiveMinimum=0,
        exclusiveMaximum=1,
    )
    max_error_increase: float = _threshold(
        0.01, "Tolerated error-rate increase, absolute (0.01 = one point).", minimum=0, maximum=1
    )
    p95_limit_ms: float = _threshold(
        250.0, "The challenger's p95 latency must stay at or below this (ms).", exclusiveMinimum=0
    )
    max_latency_increase: float = _threshold(
        0.1, "Tolerated median-latency increase, relative (0.1 = 10 %).", minimum=0
    )
    # 10 % of a 5 ms model call is noise to any caller.
    min_latency_increase_ms: float = _threshold(
        5.0, "A median-latency increase up to this many ms is always tolerated.", minimum=0
    )
    max_accuracy_drop: float = _threshold(
        0.01, "Tolerated accuracy drop on labelled dies, absolute.", minimum=0, maximum=1
    )
    psi_limit: float = _threshold(
        0.2,
        "PSI above this is a shift (0.1-0.2 is the usual 'moderate' band).",
        exclusiveMinimum=0,
    )
    min_agreement: float = _threshold(
        0.9, "Share of identical good/bad answers required in shadow.", minimum=0, maximum=1
    )

    def with_overrides(self, overrides: Mapping[str, Any]) -> Thresholds:
        """These thresholds with some replaced; ValueError names each unknown name, wrong
        type or value out of its range."""
        declared = {f.name: f for f in fields(self)}
        unknown = set(overrides) - set(declared)
        if unknown:
            raise ValueError(f"unknown threshold(s): {', '.join(sorted(unknown))}")
        checked: dict[str, Any] = {
            name: _checked(declared[name], value) for name, value in overrides.items()
        }
        return replace(self, **checked)

    def to_dict(self) -> dict[str, float]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def thresholds_schema(exclude: Collection[str] = ()) -> dict[str, Any]:
    """The JSON schema of a thresholds object (every field but ``exclude``): each property's
    type, range, description and default, no other property allowed."""
    return {
        "type": "object",
        "properties": {
            f.name: {
                "type": _json_type(f),
                **f.metadata["limits"],
                "description": f.metadata["description"],
                "default": f.default,
            }
            for f in fields(Thresholds)
            if f.name not in exclude
        },
        "additionalProperties": False,
    }


def default_thresholds(exclude: Collection[str] = ()) -> dict[str, float]:
    """The defaults of every field but ``exclude``, by name (the form's initial value)."""
    return {name: value for name, value in Thresholds().to_dict().items() if name not in exclude}


def _json_type(declared: Field) -> str:
    return "integer" if declared.type in (int, "int") else "number"


def _checked(declared: Field, value: Any) -> float:
    """``value`` as the field's type, within its range, else a ValueError naming the field."""
    integral = _json_type(declared) == "integer"
    is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not is_number or (integral and not float(value).is_integer()):
        wanted = "an integer" if integral else "a number"
        raise ValueError(f"threshold {declared.name}: {value!r} is not {wanted}")
    for keyword, bound in declared.metadata["limits"].items():
        within, words = LIMITS[keyword]
        if not within(value, bound):
            raise ValueError(f"threshold {declared.name}: {value!r} is not {words} {bound}")
    return int(value) if integral else float(value)
