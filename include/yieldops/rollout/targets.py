"""Deployment targets: the prediction gateways a rollout goes through, in order.

One YAML file, ``include/config/targets.yaml``::

    targets:
      - name: fab-a                      # shown in the grid and the audit log
        product: YO-7NM-ADC              # the gateway serves yield-<product>
        conn_id: yieldops_gateway_fab_a  # Airflow HTTP connection of the gateway
        facilities: [YO-FAB1]            # offline check: recent lots of these fabs
        recent_lots: 2

The connection holds where the gateway is and its secrets: host, port and schema give
the URL, the password is the admin token, and ``extra.prediction_log_url`` is the
SQLAlchemy URL of the gateway's prediction log (the rollout reads it to judge a step).
"""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import Field, field_validator, model_validator

from ..config import ConfigError, _Strict, config_dir, load_yaml
from ..names import model_name

TARGETS_FILE = "targets.yaml"
_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]*$")


class Target(_Strict):
    name: str = Field(description="lower-case letters, digits, - and _ (a task group id)")
    product: str = Field(description="the product whose model this gateway serves")
    conn_id: str = Field(description="Airflow HTTP connection of the gateway")
    facilities: list[str] | None = Field(
        default=None, description="MIR FACIL_ID of the lots the offline check uses; null: any fab"
    )
    recent_lots: int = Field(default=2, ge=1, description="newest lots of those fabs in the check")

    @field_validator("name")
    @classmethod
    def _task_group_safe(cls, name: str) -> str:
        if not _NAME.match(name):
            raise ValueError(f"{name!r}: use lower-case letters, digits, '-' and '_'")
        return name


class Targets(_Strict):
    targets: list[Target] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique_names(self) -> Targets:
        names = [t.name for t in self.targets]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"target names must be unique: {', '.join(twice)} repeated")
        return self


def load_targets(path: Path | None = None) -> list[Target]:
    """Every configured target, in rollout order; ConfigError names the file and field."""
    path = path or config_dir() / TARGETS_FILE
    if not path.exists():
        return []
    return load_yaml(path, Targets).targets


def targets_by_model(targets: list[Target]) -> dict[str, list[str]]:
    """Registered model (``yield-<product>``) -> the names of the targets serving it, both
    in YAML order."""
    by_model: dict[str, list[str]] = {}
    for target in targets:
        by_model.setdefault(model_name(target.product), []).append(target.name)
    return by_model


def targets_for(product: str, chosen: list[str] | None = None, path: Path | None = None):
    """The product's targets in order, restricted to ``chosen`` names when given."""
    mine = [t for t in load_targets(path) if t.product == product]
    if chosen:
        unknown = sorted(set(chosen) - {t.name for t in mine})
        if unknown:
            raise ConfigError(
                f"no target {', '.join(unknown)} for {product} "
                f"(configured: {', '.join(t.name for t in mine) or 'none'})"
            )
        mine = [t for t in mine if t.name in chosen]
    return mine
