"""Landing zones: where tester files arrive. A local folder or an S3 prefix, one interface.

Keys are paths relative to the zone root (``lotA/file.stdf``). Bad files are
copied to a ``quarantine`` folder beside the root (``landing/`` ->
``quarantine/``), so they never look landed and, on S3, raise no landing events.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import BinaryIO, Protocol
from urllib.parse import urlsplit

from .. import atomic

STDF_SUFFIXES = (".stdf", ".std", ".stdf.gz", ".std.gz", ".stdf.bz2", ".std.bz2")
QUARANTINE = "quarantine"


def is_stdf_name(key: str) -> bool:
    return key.lower().endswith(STDF_SUFFIXES)


@dataclass(frozen=True)
class LandedFile:
    """A file present in a landing zone. ``version`` changes when the bytes may have
    (S3 ETag, or size and mtime locally), so a known key is hashed only once per version."""

    key: str
    size: int
    version: str
    modified: datetime


class LandingZone(Protocol):
    url: str

    def list_files(self) -> Iterator[LandedFile]:
        """STDF files present, quarantine excluded."""
        ...

    def open(self, key: str) -> BinaryIO:
        """A binary stream of the file's bytes."""
        ...

    def quarantine(self, key: str, reason: dict) -> str:
        """Copy the file to ``<quarantine>/<key>`` with ``<key>.reason.json`` beside it;
        returns where it went. The original stays, so nothing is lost on a retry."""
        ...

    def uri(self, key: str) -> str: ...


class LocalLandingZone:
    """A folder on a local or mounted file system."""

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root).resolve()
        self.quarantine_root = self.root.parent / QUARANTINE
        self.url = self.root.as_uri()

    def list_files(self) -> Iterator[LandedFile]:
        if not self.root.is_dir():
            return
        for dirpath, dirnames, filenames in os.walk(self.root):
            here = Path(dirpath)
            dirnames[:] = [
                d for d in dirnames if not d.startswith(".") and here / d != self.quarantine_root
            ]
            for name in sorted(filenames):
                if not is_stdf_name(name) or name.startswith("."):
                    continue
                path = here / name
                stat = path.stat()
                yield LandedFile(
                    key=path.relative_to(self.root).as_posix(),
                    size=stat.st_size,
                    version=f"{stat.st_size}-{stat.st_mtime_ns}",
                    modified=datetime.fromtimestamp(stat.st_mtime, timezone.utc),
                )

    def open(self, key: str) -> BinaryIO:
        return open(self._path(key), "rb")

    def quarantine(self, key: str, reason: dict) -> str:
        target = self.quarantine_root / key
        target.parent.mkdir(parents=True, exist_ok=True)
        with self.open(key) as source:
            atomic.copy_stream(source, target)
        atomic.write_text(
            target.with_name(target.name + ".reason.json"), json.dumps(reason, indent=2)
        )
        return target.as_uri()

    def uri(self, key: str) -> str:
        return self._path(key).as_uri()

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if self.root not in path.parents:
            raise ValueError(f"{key!r} is outside the landing zone {self.root}")
        return path


def landing_zone(url: str, s3_client=None) -> LandingZone:
    """The zone behind a URL: ``file:///path``, a plain path, or ``s3://bucket/prefix``.

    For S3, pass a boto3 S3 client (Airflow code gets one from its AWS connection).
    """
    scheme = urlsplit(url).scheme
    if scheme == "s3":
        from .s3 import S3LandingZone

        return S3LandingZone(url, s3_client)
    if scheme in ("", "file"):
        return LocalLandingZone(urlsplit(url).path if scheme == "file" else url)
    raise ValueError(f"unsupported landing zone URL {url!r} (use a folder, file:// or s3://)")
