"""The analysis thresholds, declared once: overrides checked against the declaration, and
the trigger form's JSON schema made from it (Airflow validates a run's conf with jsonschema,
as here)."""

from __future__ import annotations

import jsonschema
import pytest

from yieldops.rollout.thresholds import Thresholds, default_thresholds, thresholds_schema


def test_thresholds_defaults_and_overrides():
    thresholds = Thresholds().with_overrides({"p95_limit_ms": 400.0, "min_samples": 50})
    assert thresholds.p95_limit_ms == 400.0
    assert thresholds.min_samples == 50
    assert thresholds.psi_limit == 0.2
    with pytest.raises(ValueError, match="p95_limit"):
        Thresholds().with_overrides({"p95_limit": 1.0})


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"alpha": "0.05"}, "threshold alpha: '0.05' is not a number"),
        ({"alpha": True}, "threshold alpha: True is not a number"),
        ({"alpha": 2}, "threshold alpha: 2 is not under 1"),
        ({"alpha": 0}, "threshold alpha: 0 is not over 0"),
        ({"min_samples": 2.5}, "threshold min_samples: 2.5 is not an integer"),
        ({"min_samples": 0}, "threshold min_samples: 0 is not at least 1"),
        ({"min_agreement": 1.5}, "threshold min_agreement: 1.5 is not at most 1"),
        ({"max_latency_increase": float("nan")}, "threshold max_latency_increase: nan"),
        ({"bogus": 1, "alpha": 0.05}, "unknown threshold.s.: bogus"),
    ],
)
def test_an_override_of_the_wrong_type_or_out_of_range_is_refused_naming_it(overrides, message):
    with pytest.raises(ValueError, match=message):
        Thresholds().with_overrides(overrides)


def test_overrides_take_the_declared_type():
    thresholds = Thresholds().with_overrides({"p95_limit_ms": 400, "min_samples": 50.0})
    assert type(thresholds.p95_limit_ms) is float and type(thresholds.min_samples) is int


def test_the_schema_declares_each_field_with_its_type_range_description_and_default():
    schema = thresholds_schema(exclude=["min_samples"])
    assert schema["type"] == "object" and schema["additionalProperties"] is False
    assert set(schema["properties"]) == set(Thresholds().to_dict()) - {"min_samples"}
    assert schema["properties"]["alpha"] == {
        "type": "number",
        "exclusiveMinimum": 0,
        "exclusiveMaximum": 1,
        "description": "Significance level of the one-sided tests and the KS test.",
        "default": 0.01,
    }
    assert thresholds_schema()["properties"]["min_samples"]["type"] == "integer"
    assert default_thresholds(exclude=["min_samples"]) == {
        name: spec["default"] for name, spec in schema["properties"].items()
    }


@pytest.mark.parametrize(
    "thresholds, field",
    [({"alpha": "0.05"}, "alpha"), ({"alpha": 2}, "alpha"), ({"psi_limit": 0}, "psi_limit"),
     ({"bogus": 1}, "bogus")],
)  # fmt: skip
def test_the_schema_refuses_what_the_library_refuses(thresholds, field):
    with pytest.raises(ValueError):
        Thresholds().with_overrides(thresholds)
    with pytest.raises(jsonschema.ValidationError, match=field):
        jsonschema.validate(thresholds, thresholds_schema())


def test_the_schema_accepts_the_defaults_and_a_valid_override():
    jsonschema.validate(default_thresholds(), thresholds_schema())
    jsonschema.validate({"alpha": 0.05, "min_samples": 10}, thresholds_schema())
