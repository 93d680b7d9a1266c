"""Landing zones: where tester files arrive. A local folder or an S3 prefix, one interface.

Keys are paths relative to the zone root (``lotA/file.stdf``). Bad files are
copied to a ``quarantine`` folder beside the root (``landing/`` ->
``quarantine/``), so they never look landed and, on S3, raise no landing events.

An entry with an STDF name that cannot be ingested as a file (a symbolic link out of the
root or to nothing, a pipe, a socket, a device, a directory, a name that is not UTF-8, a
path too long for the quarantine) is listed as a :class:`RejectedEntry` with its reason,
and is never opened: opening a FIFO blocks until someone writes to it.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import BinaryIO, Protocol

from .. import atomic

log = logging.getLogger(__name__)

STDF_SUFFIXES = (".stdf", ".std", ".stdf.gz", ".std.gz", ".stdf.bz2", ".std.bz2")
QUARANTINE = "quarantine"
REASON_SUFFIX = ".reason.json"
NAME_MAX = 255  # bytes in one file name (Linux, macOS, Windows file systems)
PATH_MAX = 4096  # bytes in a path, its terminating NUL included (Linux)
# atomic.write_text and copy_stream write ``.<name>.<8 random characters>`` first.
_TEMP_NAME_EXTRA = 10
# A quarantined copy's name leaves room for its reason file's suffix and temporary name.
LOCAL_QUARANTINE_NAME_MAX = NAME_MAX - len(REASON_SUFFIX) - _TEMP_NAME_EXTRA
_KEY_HASH_DIGITS = 16  # of the full key's SHA-256 in a shortened name: 64 bits


def is_stdf_name(key: str) -> bool:
    return key.lower().endswith(STDF_SUFFIXES)


class EntryProblem(Exception):
    """An entry of a landing zone that cannot be ingested as a file; the message says why.
    Not retried until the entry changes (unlike a storage error, which is)."""


def shortened_name(name: str, max_bytes: int, full_key: str) -> str:
    """``name`` when its UTF-8 fits ``max_bytes``; else its start, ``~``, 16 hex digits of the
    SHA-256 of ``full_key`` and its STDF suffix: within the limit, still an STDF name, and
    different for any two keys (their starts may be the same)."""
    if len(name.encode()) <= max_bytes:
        return name
    matched = max((s for s in STDF_SUFFIXES if name.lower().endswith(s)), key=len, default="")
    suffix = name[len(name) - len(matched) :]
    digest = hashlib.sha256(full_key.encode()).hexdigest()[:_KEY_HASH_DIGITS]
    room = max_bytes - len(suffix.encode()) - len(digest) - 1
    if room < 1:
        raise EntryProblem(f"no room for a shortened name within {max_bytes} bytes")
    start = name[: len(name) - len(suffix)].encode()[:room].decode(errors="ignore")
    return f"{start}~{digest}{suffix}"


def printable_key(key: str) -> str:
    """A key as text the ledger and messages can hold: bytes of a name that is not UTF-8
    (which ``os.walk`` gives as lone surrogates) appear as backslash escapes (``\\xff``)."""
    return os.fsencode(key).decode("utf-8", "backslashreplace")


@dataclass(frozen=True)
class LandedFile:
    """A file present in a landing zone. ``version`` changes when the bytes may have
    (S3 ETag, or size and mtime locally), so a known key is hashed only once per version."""

    key: str
    size: int
    version: str
    modified: datetime


@dataclass(frozen=True)
class RejectedEntry:
    """An entry with an STDF name that cannot be ingested as a file, and why."""

    key: str  # printable: see printable_key
    reason: str
    size: int = 0
    # The version (and modification time) that could not be read, for entries found
    # unreadable only when opened; None for those rejected by the listing, known by reason.
    version: str | None = None


class LandingZone(Protocol):
    url: str

    def list_files(self) -> Iterator[LandedFile]:
        """STDF files present, quarantine excluded."""
        ...

    def list_entries(self) -> Iterator[LandedFile | RejectedEntry]:
        """The files of ``list_files``, and the entries with an STDF name that are not one."""
        ...

    def open(self, key: str) -> BinaryIO:
        """A binary stream of the file's bytes; EntryProblem when it is not a readable file."""
        ...

    def quarantine(self, key: str, reason: dict) -> str:
        """Copy the file to ``<quarantine>/<key>`` with ``<key>.reason.json`` beside it
        (a name too long for the storage is shortened, its full key's hash kept; the reason
        names the full key); returns where it went. The original stays, so nothing is lost
        on a retry."""
        ...

    def uri(self, key: str) -> str: ...


class LocalLandingZone:
    """A folder on a local or mounted file system."""

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root).resolve()
        self.quarantine_root = self.root.parent / QUARANTINE
        self.url = self.root.as_uri()

    def list_files(self) -> Iterator[LandedFile]:
        return (e for e in self.list_entries() if isinstance(e, LandedFile))

    def list_entries(self) -> Iterator[LandedFile | RejectedEntry]:
        if not self.root.is_dir():
            return
        # Symbolic links to folders are not walked into (a loop would never end); those named
        # like STDF files are entries, as are folders so named (their content is walked).
        for dirpath, dirnames, filenames in os.walk(self.root, onerror=_log_unlistable):
            here = Path(dirpath)
            dirnames[:] = [
                d for d in dirnames if not d.startswith(".") and here / d != self.quarantine_root
            ]
            names = [n for n in filenames + dirnames if is_stdf_name(n) and not n.startswith(".")]
            for name in sorted(names):
                if entry := self._entry(here / name):
                    yield entry

    def _entry(self, path: Path) -> LandedFile | RejectedEntry | None:
        """What a listed name is; None when it is gone since it was listed."""
        key = path.relative_to(self.root).as_posix()
        if printable_key(key) != key:
            return RejectedEntry(printable_key(key), "the name is not valid UTF-8")
        try:
            status = self._followed_stat(path)
            if not stat.S_ISREG(status.st_mode):
                raise EntryProblem(f"{_kind(status.st_mode)}, not a regular file")
            self.quarantine_path(key)
        except FileNotFoundError:
            return None
        except OSError as exc:  # no permission to look, an I/O error
            return RejectedEntry(key, f"cannot be read: {exc.strerror or exc}")
        except EntryProblem as problem:
            return RejectedEntry(key, str(problem))
        return LandedFile(
            key=key,
            size=status.st_size,
            version=f"{status.st_size}-{status.st_mtime_ns}",
            modified=datetime.fromtimestamp(status.st_mtime, timezone.utc),
        )

    def _followed_stat(self, path: Path) -> os.stat_result:
        """The status of what ``path`` names, following symbolic links only to inside the
        root: a link out of it, to nothing or in a loop is an EntryProblem."""
        status = path.lstat()
        if not stat.S_ISLNK(status.st_mode):
            return status
        target = printable_key(os.readlink(path))
        try:
            status = path.stat()
        except OSError as exc:
            if exc.errno == errno.ENOENT:
                raise EntryProblem(f"dangling symbolic link to {target}") from exc
            if exc.errno == errno.ELOOP:
                raise EntryProblem(f"symbolic link loop (to {target})") from exc
            raise EntryProblem(f"symbolic link to {target}: {exc.strerror}") from exc
        real = Path(os.path.realpath(path))
        if not self._inside(real):
            raise EntryProblem(
                f"symbolic link to {printable_key(str(real))}, outside the landing root"
                f" {printable_key(str(self.root))}"
            )
        return status

    def open(self, key: str) -> BinaryIO:
        # Non-blocking: opening a FIFO swapped in since the listing returns at once (instead
        # of waiting for a writer), and the check below refuses it.
        fd = os.open(self._path(key), os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        try:
            mode = os.fstat(fd).st_mode
            if not stat.S_ISREG(mode):
                raise EntryProblem(f"{key}: {_kind(mode)}, not a regular file")
            os.set_blocking(fd, True)
            return os.fdopen(fd, "rb")
        except BaseException:
            os.close(fd)
            raise

    def quarantine(self, key: str, reason: dict) -> str:
        target = self.quarantine_path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        with self.open(key) as source:
            atomic.copy_stream(source, target, durable=True)
        atomic.write_text(
            target.with_name(target.name + REASON_SUFFIX),
            json.dumps(reason, indent=2),
            durable=True,
        )
        return target.as_uri()

    def quarantine_path(self, key: str) -> Path:
        """``<quarantine>/<key>``, its file name shortened (LOCAL_QUARANTINE_NAME_MAX) so that
        the copy, its reason file and their temporary names fit NAME_MAX; EntryProblem when
        the whole path would not fit PATH_MAX."""
        *folders, name = key.split("/")
        target = self.quarantine_root.joinpath(
            *folders, shortened_name(name, LOCAL_QUARANTINE_NAME_MAX, key)
        )
        length = len(os.fsencode(target)) + len(REASON_SUFFIX) + _TEMP_NAME_EXTRA
        if length >= PATH_MAX:
            raise EntryProblem(
                f"too long for the quarantine: its reason file's path would be {length} bytes"
                f" (at most {PATH_MAX - 1})"
            )
        return target

    def uri(self, key: str) -> str:
        return self._path(key).as_uri()

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if not self._inside(path):
            raise EntryProblem(f"{key!r} is outside the landing zone {self.root}")
        return path

    def _inside(self, path: Path) -> bool:
        return self.root in path.parents


def _kind(mode: int) -> str:
    kinds = {
        stat.S_IFDIR: "a directory",
        stat.S_IFIFO: "a named pipe (FIFO)",
        stat.S_IFSOCK: "a socket",
        stat.S_IFCHR: "a character device",
        stat.S_IFBLK: "a block device",
    }
    return kinds.get(stat.S_IFMT(mode), f"a file of type {stat.S_IFMT(mode):o}")


def _log_unlistable(error: OSError) -> None:
    log.warning("cannot list %s: %s", printable_key(str(error.filename)), error.strerror)
