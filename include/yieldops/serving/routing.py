"""The routing table: which version answers which die.

Modes:

- ``off``: the champion answers everything.
- ``shadow``: the champion answers everything.
- ``canary``: the challenger answers the dies whose key hashes below ``weight`` (0-100);
  sticky: the same die key always lands on the same side for a given weight.
- ``bluegreen``: ``live`` (``champion`` or ``challenger``) answers everything; both stay
  loaded so switching back is instant.

In every mode but ``off`` the table mirrors: the version that does not answer a die
scores a copy of it off the request path, so the rollout analysis compares both
versions on the same dies.

Persisted as a JSON file written aside and renamed, so a restart keeps it and a crash
never leaves half a file.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from ..atomic import write_text

MODES = ("off", "shadow", "canary", "bluegreen")
CHAMPION, CHALLENGER = "champion", "challenger"
_FIELDS = ("champion", "challenger", "mode", "weight", "live")


class RoutingError(ValueError):
    """A routing table that cannot be served (unknown mode, weight out of range...)."""


@dataclass(frozen=True)
class Routing:
    champion: int
    challenger: int | None = None
    mode: str = "off"
    weight: int = 0
    live: str = CHAMPION

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise RoutingError(f"mode {self.mode!r} is not one of {', '.join(MODES)}")
        if isinstance(self.weight, bool) or not isinstance(self.weight, int):
            raise RoutingError(f"weight must be an integer 0-100, got {self.weight!r}")
        if not 0 <= self.weight <= 100:
            raise RoutingError(f"weight must be 0-100, got {self.weight}")
        if self.live not in (CHAMPION, CHALLENGER):
            raise RoutingError(f"live must be {CHAMPION} or {CHALLENGER}, got {self.live!r}")
        for name in ("champion", "challenger"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
                raise RoutingError(f"{name} must be a version number, got {value!r}")
        if self.mode != "off" and self.challenger is None:
            raise RoutingError(f"mode {self.mode} needs a challenger version")

    # -- who answers -------------------------------------------------------------------

    def versions(self) -> set[int]:
        """The versions this table needs loaded."""
        needed = {self.champion}
        if self.mode != "off" and self.challenger is not None:
            needed.add(self.challenger)
        return needed

    def role_for(self, die_key: str) -> str:
        """``champion`` or ``challenger``: who answers this die."""
        if self.mode == "canary" and bucket(die_key) < self.weight:
            return CHALLENGER
        if self.mode == "bluegreen":
            return self.live
        return CHAMPION

    def version_of(self, role: str) -> int:
        version = self.champion if role == CHAMPION else self.challenger
        assert version is not None
        return version

    @property
    def mirrors(self) -> bool:
        """Whether the version that does not answer a die scores a copy of it."""
        return self.mode != "off"

    # -- changes and storage -----------------------------------------------------------

    def updated(self, changes: Mapping[str, Any]) -> Routing:
        unknown = set(changes) - set(_FIELDS)
        if unknown:
            raise RoutingError(f"unknown routing fields: {', '.join(sorted(unknown))}")
        try:
            return replace(self, **changes)
        except TypeError as exc:
            raise RoutingError(str(exc)) from exc

    def rolled_back(self) -> Routing:
        """Back to the champion alone."""
        return Routing(champion=self.champion)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Routing:
        if "champion" not in data:
            raise RoutingError("routing needs a champion version")
        unknown = set(data) - set(_FIELDS)
        if unknown:
            raise RoutingError(f"unknown routing fields: {', '.join(sorted(unknown))}")
        return cls(**dict(data))


def counterpart(role: str) -> str:
    """The other role: who scores the mirrored copy of a die ``role`` answers."""
    return CHALLENGER if role == CHAMPION else CHAMPION


def bucket(die_key: str) -> int:
    """0-99, stable across processes and restarts (SHA-1 of the key, not ``hash()``)."""
    digest = hashlib.sha1(die_key.encode(), usedforsecurity=False).digest()
    return int.from_bytes(digest[:8], "big") % 100


def load_routing(path: Path) -> Routing | None:
    """The persisted table, or None when there is none yet."""
    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        return None
    return Routing.from_dict(json.loads(text))


def save_routing(path: Path, routing: Routing) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text(path, json.dumps(routing.to_dict(), indent=2) + "\n")
