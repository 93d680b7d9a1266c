"""Byte sources for the reader: paths or binary streams, plain, gzip or bzip2."""

from __future__ import annotations

import bz2
import gzip
import io
import os
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from typing import BinaryIO, Protocol

import numpy as np

from .errors import CompressionError, NotStdfError, UnsupportedVersionError

Source = str | os.PathLike | BinaryIO
DEFAULT_CHUNK_SIZE = 8 << 20
MAX_RECORD = 4 + 0xFFFF  # header plus the largest body a U2 length allows
_GZIP_MAGIC = b"\x1f\x8b"
_BZIP2_MAGIC = b"BZh"
_DECOMPRESSION_ERRORS = (EOFError, zlib.error, gzip.BadGzipFile, OSError)


class Digest(Protocol):
    """A hashlib object, e.g. ``hashlib.sha256()``."""

    def update(self, data: memoryview, /) -> None: ...


class ByteStream(Protocol):
    """What the reader reads from: any binary stream (``typing.BinaryIO`` lacks ``readinto``)."""

    def readinto(self, buffer: memoryview, /) -> int | None: ...


def source_name(src: Source) -> str:
    if isinstance(src, (str, os.PathLike)):
        return os.fspath(src)
    return str(getattr(src, "name", "<stream>"))


@contextmanager
def open_stdf(src: Source) -> Iterator[ByteStream]:
    """Open a path or wrap a binary stream, decompressing gzip or bzip2 by their magic bytes."""
    raw: BinaryIO = open(src, "rb") if isinstance(src, (str, os.PathLike)) else src  # noqa: SIM115
    try:
        # Here and at the last yield: typeshed's BinaryIO has no readinto, which every
        # binary stream has (python/typeshed#6596).
        stream = raw if hasattr(raw, "peek") else io.BufferedReader(raw)  # type: ignore[type-var]
        magic = stream.peek(3)[:3]
        if magic.startswith(_GZIP_MAGIC):
            yield gzip.GzipFile(fileobj=stream, mode="rb")
        elif magic.startswith(_BZIP2_MAGIC):
            yield bz2.BZ2File(stream, mode="rb")
        else:
            yield stream  # type: ignore[misc]
    finally:
        if raw is not src:
            raw.close()


def byte_order(path: str, head: bytes) -> bool:
    """Check the File Attributes Record and say whether the file is little-endian."""
    if len(head) < 6 or head[2] != 0 or head[3] != 10:
        raise NotStdfError(
            path, "does not start with an STDF File Attributes Record (FAR)", 0, "FAR"
        )
    cpu_type, version = head[4], head[5]
    if version != 4:
        raise UnsupportedVersionError(
            path, f"STDF version {version}; only V4 is supported", 0, "FAR"
        )
    if cpu_type not in (1, 2):
        raise UnsupportedVersionError(
            path,
            f"FAR CPU_TYPE {cpu_type}; only 1 (big-endian) and 2 (little-endian) are supported",
            0, "FAR",
        )  # fmt: skip
    return cpu_type == 2


class ChunkReader:
    """Reads a stream into one reusable buffer, carrying a partial record over.

    ``fill(carry_from)`` keeps the bytes from ``carry_from`` on (the start of
    a record not yet whole), moves them to the front and reads up to
    ``chunk_size`` more; ``base`` is the stream offset of ``buffer[0]``. A ``digest``
    (a hashlib object) is fed every byte read: the file's decoded content.
    """

    def __init__(
        self,
        stream: ByteStream,
        path: str,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        digest: Digest | None = None,
    ) -> None:
        self.stream = stream
        self.digest = digest
        self.path = path
        self.buffer = np.empty(max(chunk_size, 1 << 16) + MAX_RECORD, dtype=np.uint8)
        self.end = 0
        self.base = 0
        self.eof = False

    def fill(self, carry_from: int) -> None:
        carried = self.end - carry_from
        self.buffer[:carried] = self.buffer[carry_from : self.end]
        self.base += carry_from
        self.end = carried
        view = self.buffer.data
        try:
            while self.end < len(self.buffer) and not self.eof:
                got = self.stream.readinto(view[self.end :])
                if got and self.digest is not None:
                    self.digest.update(view[self.end : self.end + got])
                self.eof = not got
                self.end += got or 0
        except _DECOMPRESSION_ERRORS as exc:
            if not isinstance(self.stream, (gzip.GzipFile, bz2.BZ2File)):
                raise
            raise CompressionError(
                self.path, f"corrupt compressed data: {exc}", self.base + self.end
            ) from exc
