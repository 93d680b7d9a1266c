"""Byte sources for the reader: paths or binary streams, plain, gzip or bzip2."""

from __future__ import annotations

import bz2
import gzip
import io
import os
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import BinaryIO, Protocol

import numpy as np

from .errors import (
    CompressionError,
    DecompressionLimitError,
    NotStdfError,
    UnsupportedVersionError,
)
from .spec import (
    CPU_BIG_ENDIAN,
    CPU_LITTLE_ENDIAN,
    HEADER_SIZE,
    MAX_BODY,
    RECORDS,
    STDF_VERSION,
)

Source = str | os.PathLike | BinaryIO
DEFAULT_CHUNK_SIZE = 8 << 20
MAX_RECORD = HEADER_SIZE + MAX_BODY
FAR_BYTES = HEADER_SIZE + RECORDS["FAR"].min_length  # what byte_order reads
_GZIP_MAGIC = b"\x1f\x8b"
_BZIP2_MAGIC = b"BZh"
_DECOMPRESSION_ERRORS = (EOFError, zlib.error, gzip.BadGzipFile, OSError)


@dataclass(frozen=True)
class DecompressionLimits:
    """How far a compressed file may decompress before it is refused as a bomb.

    Real STDF compresses about 5 to 20 times (gzip); a gzip bomb about 1000 times, a bzip2
    one far more. The ratio (bytes out per compressed byte read so far) is checked only
    past ``ratio_from`` decompressed bytes: a small file may compress as well as it likes.
    """

    max_bytes: int = 32 << 30
    max_ratio: float = 200.0
    ratio_from: int = 64 << 20


DEFAULT_LIMITS = DecompressionLimits()


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
def open_stdf(src: Source, limits: DecompressionLimits = DEFAULT_LIMITS) -> Iterator[ByteStream]:
    """Open a path or wrap a binary stream, decompressing gzip or bzip2 by their magic bytes
    within ``limits``."""
    raw: BinaryIO = open(src, "rb") if isinstance(src, (str, os.PathLike)) else src  # noqa: SIM115
    try:
        # Here and at the last yield: typeshed's BinaryIO has no readinto, which every
        # binary stream has (python/typeshed#6596).
        stream = raw if hasattr(raw, "peek") else io.BufferedReader(raw)  # type: ignore[type-var]
        magic = stream.peek(3)[:3]
        compressed = _CountedReads(stream)
        if magic.startswith(_GZIP_MAGIC):
            inflated: gzip.GzipFile | bz2.BZ2File = gzip.GzipFile(fileobj=compressed, mode="rb")
        elif magic.startswith(_BZIP2_MAGIC):
            inflated = bz2.BZ2File(compressed, mode="rb")
        else:
            yield stream  # type: ignore[misc]
            return
        yield Decompressing(inflated, compressed, limits, source_name(src))
    finally:
        if raw is not src:
            raw.close()


class _CountedReads:
    """A compressed stream that counts the bytes the decompressor takes from it."""

    def __init__(self, stream: BinaryIO) -> None:
        self.stream = stream
        self.count = 0

    def read(self, size: int = -1, /) -> bytes:
        data = self.stream.read(size)
        self.count += len(data)
        return data

    def seekable(self) -> bool:
        return False

    def seek(self, offset: int, /) -> int:
        raise io.UnsupportedOperation("seek")


class Decompressing:
    """A decompressed stream that raises ``DecompressionLimitError`` past its limits."""

    def __init__(
        self,
        stream: gzip.GzipFile | bz2.BZ2File,
        compressed: _CountedReads,
        limits: DecompressionLimits,
        path: str,
    ) -> None:
        self.stream, self.compressed, self.limits, self.path = stream, compressed, limits, path
        self.total = 0

    def readinto(self, buffer: memoryview, /) -> int:
        got = self.stream.readinto(buffer)
        self.total += got
        self._check()
        return got

    def _check(self) -> None:
        read, limits = max(self.compressed.count, 1), self.limits
        ratio = self.total / read
        numbers = f"{self.total} bytes from {self.compressed.count} compressed bytes read"
        if self.total > limits.max_bytes:
            problem = f"decompresses past the limit of {limits.max_bytes} bytes ({numbers})"
        elif self.total > limits.ratio_from and ratio > limits.max_ratio:
            problem = (
                f"decompresses {ratio:.0f} times its size, past the limit of "
                f"{limits.max_ratio:g} ({numbers}): a decompression bomb, not a tester file"
            )
        else:
            return
        raise DecompressionLimitError(self.path, problem, self.total)


def byte_order(path: str, head: bytes) -> bool:
    """Check the File Attributes Record and say whether the file is little-endian."""
    far = RECORDS["FAR"]
    if len(head) < FAR_BYTES or (head[2], head[3]) != (far.typ, far.sub):
        raise NotStdfError(
            path, "does not start with an STDF File Attributes Record (FAR)", 0, "FAR"
        )
    cpu_type, version = head[4], head[5]
    if version != STDF_VERSION:
        raise UnsupportedVersionError(
            path, f"STDF version {version}; only V4 is supported", 0, "FAR"
        )
    if cpu_type not in (CPU_BIG_ENDIAN, CPU_LITTLE_ENDIAN):
        raise UnsupportedVersionError(
            path,
            f"FAR CPU_TYPE {cpu_type}; only 1 (big-endian) and 2 (little-endian) are supported",
            0, "FAR",
        )  # fmt: skip
    return cpu_type == CPU_LITTLE_ENDIAN


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
            if not isinstance(self.stream, Decompressing):
                raise
            raise CompressionError(
                self.path, f"corrupt compressed data: {exc}", self.base + self.end
            ) from exc
