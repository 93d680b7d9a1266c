"""Rollout strategies as a list of steps, each a routing change to make and judge.

- ``canary``: shadow, then the challenger answers a growing sticky share of dies
  (default 5, 25, 50, 100 %); then promotion.
- ``bluegreen``: shadow, then every die switches to the challenger at once while the
  champion stays loaded for an instant switch back; then promotion.
- ``restore``: no step: an earlier champion is promoted again (rollback to any version
  that served before).

A run's :class:`RolloutPlan` (which version goes where, by which steps, judged how) and
each :class:`RoutedStep` travel between the tasks of ``model_rollout`` as JSON
(``to_dict``/``from_dict``); ``yieldops.rollout.flow`` acts on them.

A step has one name everywhere: the task group of ``model_rollout``'s grid, the audit log
and the Rollouts page (``shadow``, ``canary-25``, ``switch``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timezone
from typing import Any

from .thresholds import Thresholds

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


@dataclass(frozen=True)
class RunOrigin:
    """The run carrying the rollout out, as the audit log names it."""

    dag_id: str
    run_id: str
    triggered_by: str


@dataclass(frozen=True)
class StepTiming:
    step_seconds: float  # each step runs at least this long before its analysis
    # An inconclusive step waits up to this long, then stops the rollout: rejected when a
    # check saw the challenger worse, aborted when it never had the samples to judge it.
    max_step_seconds: float
    poll_seconds: float  # how often a waiting step counts its samples


@dataclass(frozen=True)
class RolloutPlan:
    """Which version goes where, by which steps, judged how."""

    product: str
    model: str
    version: int
    champion: int | None  # None: the first model, promoted after its offline checks
    strategy: str
    steps: tuple[Step, ...]
    targets: tuple[str, ...]
    timing: StepTiming
    thresholds: Thresholds
    require_approval: bool
    offline_check: bool
    dag_id: str
    run_id: str
    triggered_by: str

    @property
    def step_names(self) -> list[str]:
        return [step.name for step in self.steps]

    @property
    def compared_champion(self) -> int:
        """The champion the steps compare the challenger with (a plan with steps has one)."""
        if self.champion is None:
            raise ValueError(f"{self.model} v{self.version} has no champion to be judged against")
        return self.champion

    def step(self, name: str) -> Step:
        return next(step for step in self.steps if step.name == name)

    def path(self) -> str:
        """``canary: shadow -> canary-5 -> ...`` (or ``no step``)."""
        return f"{self.strategy}: {' -> '.join(self.step_names) or 'no step'}"

    def path_of(self, target_name: str) -> str:
        """The plan's path, or that the target is not in it."""
        if target_name in self.targets:
            return self.path()
        return f"{target_name} is not a target of {self.model}"

    def skips_offline_check(self, target_name: str) -> bool:
        """A target not in the plan, and every target of a restore, skip the check."""
        return target_name not in self.targets or self.strategy == "restore"

    def unplanned_steps(self, target_name: str, offered_steps: Sequence[str]) -> list[str]:
        """The steps offered that the plan does not take on the target (all of them for a
        target not in the plan)."""
        planned = self.step_names if target_name in self.targets else []
        return [name for name in offered_steps if name not in planned]

    def to_dict(self) -> dict[str, Any]:
        return {
            **{f.name: getattr(self, f.name) for f in fields(self)},
            "steps": [step.to_dict() for step in self.steps],
            "targets": list(self.targets),
            "timing": asdict(self.timing),
            "thresholds": self.thresholds.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RolloutPlan:
        return cls(
            **{
                **data,
                "steps": tuple(Step(**step) for step in data["steps"]),
                "targets": tuple(data["targets"]),
                "timing": StepTiming(**data["timing"]),
                "thresholds": Thresholds(**data["thresholds"]),
            }
        )


@dataclass(frozen=True)
class RoutedStep:
    """A step once its routing is set on a target: judged on the log from ``since``."""

    target: str
    name: str
    check_agreement: bool
    since: datetime
    log_url: str

    def elapsed_seconds(self) -> float:
        return (datetime.now(timezone.utc) - self.since).total_seconds()

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "since": self.since.isoformat()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RoutedStep:
        return cls(**{**data, "since": datetime.fromisoformat(data["since"])})
