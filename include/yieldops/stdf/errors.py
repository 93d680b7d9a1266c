"""Errors raised for bad STDF input: one hierarchy, each naming file, offset and record."""

from __future__ import annotations


class StdfError(Exception):
    """A file could not be read as STDF V4.

    ``path`` names the file (or stream), ``offset`` the byte offset in the
    decompressed stream where the problem starts, ``record`` the record type
    involved when known.
    """

    def __init__(
        self, path: str, message: str, offset: int | None = None, record: str | None = None
    ) -> None:
        self.path = path
        self.offset = offset
        self.record = record
        self.reason = message
        where = [] if offset is None else [f"byte {offset}"]
        if record:
            where.append(f"record {record}")
        located = f" ({', '.join(where)})" if where else ""
        super().__init__(f"{path}{located}: {message}")


class NotStdfError(StdfError):
    """The stream does not start with an STDF File Attributes Record."""


class UnsupportedVersionError(StdfError):
    """STDF version or CPU type this reader does not decode (only V4, CPU types 1 and 2)."""


class TruncatedError(StdfError):
    """The stream ends inside a record."""


class RecordLengthError(StdfError):
    """A record's length cannot hold its required fields, or is longer than its fields allow."""


class UndefinedRecordError(StdfError):
    """A record type STDF does not define (nor reserve): the reader lost the record boundaries."""


class CompressionError(StdfError):
    """The gzip or bzip2 container is corrupt."""


class DecompressionLimitError(StdfError):
    """A compressed file decompresses past the size or ratio limit (a decompression bomb)."""
