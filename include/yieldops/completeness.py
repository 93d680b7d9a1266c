"""Whether a landed file is complete, or its tester is still writing it.

Testers write STDF progressively, into the very folder or key ingest watches. A file is
complete when it ends with its MRR (the last record STDF allows), or, for a product whose
tester writes no MRR (product YAML ``tester.writes_mrr: false``), once its size and
modification time have been stable for ``quiet``. Anything else (no MRR yet, a record or a
compressed stream cut short) waits; past ``max_age`` since its last change it is
quarantined as incomplete.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from .stdf import CompressionError, NotStdfError, StdfError, TruncatedError

FAR_SIZE = 6  # the File Attributes Record opening every STDF file: header and two bytes


@dataclass(frozen=True)
class CompletenessRules:
    """``quiet``: how long a file of a tester that writes no MRR must stay unchanged to be
    complete; ``max_age``: how long after its last change an incomplete file still waits."""

    quiet: timedelta = timedelta(seconds=300)
    max_age: timedelta = timedelta(hours=24)

    @classmethod
    def of(cls, quiet_seconds: float, max_age_seconds: float) -> CompletenessRules:
        return cls(timedelta(seconds=quiet_seconds), timedelta(seconds=max_age_seconds))


# For files handed over as finished (what ``yieldops run FILES`` sets through its settings):
# complete now, or quarantined.
HANDED_OVER = CompletenessRules(quiet=timedelta(0), max_age=timedelta(0))


@dataclass(frozen=True)
class Unfinished:
    """What a file still lacks, and how long after its last change it is looked at again."""

    missing: str
    settles_after: timedelta


def cut_short(exc: StdfError, size: int) -> str | None:
    """Why a decoding error means the file is still being written (None: it is corrupt).

    A record cut at the end, a gzip or bzip2 stream without its end marker, or fewer bytes
    than the FAR are what a file looks like while its tester is appending to it."""
    if isinstance(exc, TruncatedError):
        return f"{exc.reason} at byte {exc.offset}"
    if isinstance(exc, CompressionError) and isinstance(exc.__cause__, EOFError):
        return f"the compressed stream ends before its end marker ({size} bytes)"
    if isinstance(exc, NotStdfError) and size < FAR_SIZE:
        return f"{size} bytes, fewer than an STDF file's first record"
    return None


def without_mrr(
    writes_mrr: bool | None, unchanged_for: timedelta, rules: CompletenessRules
) -> Unfinished | None:
    """For a file that decoded whole but does not end with an MRR: None when it is complete
    all the same (its tester writes no MRR and it has been quiet long enough), else what it
    lacks."""
    if writes_mrr is False:
        if unchanged_for >= rules.quiet:
            return None
        return Unfinished(
            f"no MRR (its tester writes none) and changed {_span(unchanged_for)} ago, within "
            f"the quiet period of {_span(rules.quiet)}",
            rules.quiet,
        )
    return Unfinished("no MRR at the end", rules.max_age)


def too_old_reason(missing: str, modified: datetime, age: timedelta, max_age: timedelta) -> str:
    return (
        f"{missing}; last changed {modified:%Y-%m-%d %H:%M:%S} UTC, {_span(age)} ago, "
        f"longer than the {_span(max_age)} a file still being written may take"
    )


def waiting_reason(missing: str, recheck_at: datetime) -> str:
    return f"{missing}: waits, looked at again at {recheck_at:%Y-%m-%d %H:%M:%S} UTC"


def _span(delta: timedelta) -> str:
    seconds = max(delta.total_seconds(), 0.0)
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 2 * 3600:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


class HashedBytes:
    """A landed file's bytes for the reader (``stream``), hashed as they are read, so ingest
    knows whether it decoded the very bytes it claimed: a file still growing may have
    changed since it was listed."""

    def __init__(self, raw: Any) -> None:
        self._hashing = _Hashing(raw)
        self.stream = io.BufferedReader(self._hashing)

    def sha256_to_end(self) -> str:
        """The hash of every byte, reading what the decoder left unread."""
        while self.stream.read(1 << 20):
            pass
        return self._hashing.digest.hexdigest()


class _Hashing(io.RawIOBase):
    def __init__(self, raw: Any) -> None:
        self._raw = raw
        self.name = getattr(raw, "name", "<stream>")  # the reader names the file by it
        self.digest = hashlib.sha256()

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        got = self._raw.readinto(buffer)
        if got:
            self.digest.update(memoryview(buffer)[:got])
        return got or 0
