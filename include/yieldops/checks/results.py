"""Lines of the ``yieldops check`` report, and the guard that keeps one broken input from
stopping the other checks."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

OK, FAIL, SKIP = "OK", "FAIL", "SKIP"


@dataclass(frozen=True)
class Result:
    status: str  # OK, FAIL, or SKIP when there is nothing to check
    what: str  # the kind of check: product YAML, DAG file, ...
    where: str  # file[:line] or folder
    detail: str = ""

    @property
    def failed(self) -> bool:
        return self.status == FAIL


def location(path: Path | str, line: int | None = None) -> str:
    """``path[:line]``, relative to the working directory when under it, as editors link it."""
    shown = Path(path).resolve()
    if shown.is_relative_to(Path.cwd()):
        shown = shown.relative_to(Path.cwd())
    return f"{shown}:{line}" if line else str(shown)


def guarded(what: str, where: Path | str, check: Callable[[], list[Result]]) -> list[Result]:
    """The check's results, or one FAIL naming what it raised: bad input never stops the rest."""
    try:
        return check()
    except Exception as exc:
        return [Result(FAIL, what, location(where), f"{type(exc).__name__}: {exc}")]


def format_report(results: Sequence[Result]) -> str:
    """One aligned line per result, then the count of each status."""
    what = max((len(r.what) for r in results), default=0)
    where = max((len(r.where) for r in results), default=0)
    lines = [
        f"{r.status:<4}  {r.what:<{what}}  {r.where:<{where}}  {r.detail}".rstrip() for r in results
    ]
    counts = Counter(r.status for r in results)
    tally = ", ".join(f"{counts[status]} {status}" for status in (OK, FAIL, SKIP) if counts[status])
    checks = "1 check" if len(results) == 1 else f"{len(results)} checks"
    lines.append(f"{checks}: {tally or 'none ran'}")
    return "\n".join(lines)
