"""STDF V4 reading and writing.

>>> from yieldops.stdf import read_tables
>>> tables = read_tables("lot.stdf.gz")  # doctest: +SKIP
>>> tables["parts"].num_rows  # doctest: +SKIP
"""

from .errors import (
    CompressionError,
    DecompressionLimitError,
    NotStdfError,
    RecordLengthError,
    StdfError,
    TruncatedError,
    UndefinedRecordError,
    UnsupportedVersionError,
)
from .scan import DecodeFacts, read_records, record_counts
from .source import DecompressionLimits
from .tables import iter_tables, read_tables, to_parquet
from .writer import StdfWriter

__all__ = [
    "CompressionError",
    "DecodeFacts",
    "DecompressionLimitError",
    "DecompressionLimits",
    "NotStdfError",
    "RecordLengthError",
    "StdfError",
    "StdfWriter",
    "TruncatedError",
    "UndefinedRecordError",
    "UnsupportedVersionError",
    "iter_tables",
    "read_records",
    "read_tables",
    "record_counts",
    "to_parquet",
]
