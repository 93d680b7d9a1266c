"""Rollout strategies as a list of steps, each a routing change to make and judge.

- ``canary``: shadow, then the challenger answers a growing sticky share of dies
  (default 5, 25, 50, 100 %); then promotion.
- ``bluegreen``: shadow, then every die switches to the challenger at once while the
  champion stays loaded for an instant switch back; then promotion.
- ``restore``: no step: an earlier champion is promoted again (rollback to any version
  that served before).

A step has one name everywhere: the task group of ``model_rollout``'s grid, the audit log
and the Rollouts page (``shadow``, ``canary-25``, ``switch``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

STRATEGIES = ("canary", "bluegreen", "restore")
DEFAULT_CANARY_STEPS = (5, 25, 50, 100)
# Canary steps a deployment may offer (each is a task group of the Airflow grid).
MAX_STEPS_AFTER_SHADOW = 6


@dataclass(frozen=True)
class Step:
    name: str
    # Routing fields of PUT /v1/routing besides the champion and challenger versions.
    routing: dict[str, Any] = field(default_factory=dict)
    # Shadow steps also require the two versions to agree on most dies.
    check_agreement: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


SHADOW = Step("shadow", {"mode": "shadow", "weight": 0, "live": "champion"}, True)
SWITCH = Step("switch", {"mode": "bluegreen", "weight": 0, "live": "challenger"})


def offered_steps(canary_weights: Sequence[int] = DEFAULT_CANARY_STEPS) -> list[str]:
    """The names of every step a rollout can take in a deployment offering these canary
    weights, in order: model_rollout has a task group for each, and a plan uses some."""
    return [step.name for step in (SHADOW, *_canaries(canary_weights), SWITCH)]


def plan_steps(
    strategy: str,
    canary_steps: Sequence[int] = DEFAULT_CANARY_STEPS,
    offered: Sequence[str] | None = None,
) -> list[Step]:
    """The steps of ``strategy``, shadow first; ValueError says what is wrong with them,
    including a step that is not among the ``offered`` ones (``offered_steps``)."""
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy {strategy!r} is not one of {', '.join(STRATEGIES)}")
    if strategy == "restore":
        return []
    steps = [SHADOW, SWITCH] if strategy == "bluegreen" else [SHADOW, *_canaries(canary_steps)]
    missing = [s.name for s in steps if offered is not None and s.name not in offered]
    if missing:
        raise ValueError(
            f"step(s) {', '.join(missing)} not offered by this deployment: its steps are "
            f"{', '.join(offered or [])} (YIELDOPS_ROLLOUT_CANARY_STEPS sets the canary ones)"
        )
    return steps


def _canaries(canary_steps: Sequence[int]) -> list[Step]:
    weights = list(canary_steps)
    if not weights or len(weights) > MAX_STEPS_AFTER_SHADOW:
        raise ValueError(f"canary steps: 1 to {MAX_STEPS_AFTER_SHADOW} weights, got {weights}")
    if any(isinstance(w, bool) or not isinstance(w, int) or not 1 <= w <= 100 for w in weights):
        raise ValueError(f"canary steps are percentages 1-100, got {weights}")
    if weights != sorted(set(weights)):
        raise ValueError(f"canary steps must increase, got {weights}")
    return [
        Step(f"canary-{w}", {"mode": "canary", "weight": w, "live": "champion"}) for w in weights
    ]
