"""STDF V4 reading and writing.

>>> from yieldops.stdf import read_tables
>>> tables = read_tables("lot.stdf.gz")  # doctest: +SKIP
>>> tables["parts"].num_rows  # doctest: +SKIP
"""

from .errors import (
    CompressionError,
    NotStdfError,
    RecordLengthError,
    StdfError,
    TruncatedError,
    UnsupportedVersionError,
)
from .reader import (
    DecodeFacts,
    iter_tables,
    read_records,
    read_tables,
    record_counts,
    to_parquet,
)
from .writer import StdfWriter

__all__ = [
    "CompressionError",
    "DecodeFacts",
    "NotStdfError",
    "RecordLengthError",
    "StdfError",
    "StdfWriter",
    "TruncatedError",
    "UnsupportedVersionError",
    "iter_tables",
    "read_records",
    "read_tables",
    "record_counts",
    "to_parquet",
]
