"""The STDF chunk scanner: a file's bytes in, its records found, checked and counted.

A file (plain, gzip or bzip2) is read chunk by chunk into one buffer; one compiled scan
per chunk finds the whole records in it (body offset, length and kind), a record that
cannot be what its header says (an undefined type, a REC_LEN its type cannot have)
stops the file with an error naming it, and a file ending inside a record is truncated.
``tables`` maps the scanned records to the curated tables; ``read_records`` here gives
every field of the records of some types as they are.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from . import kernels
from .errors import RecordLengthError, StdfError, TruncatedError, UndefinedRecordError
from .records import RecordBlock
from .source import (
    DEFAULT_CHUNK_SIZE,
    FAR_BYTES,
    ByteStream,
    ChunkReader,
    Digest,
    Source,
    byte_order,
    open_stdf,
    source_name,
)
from .spec import HEADER_SIZE, MAX_BODY, MEMORY_RECORDS, RECORDS, RESERVED_TYPES, V4_2007_RECORDS

_SKIPPED = {**V4_2007_RECORDS, **MEMORY_RECORDS}
KIND_NAMES: list[str] = ["UNDEFINED", *RECORDS, *_SKIPPED.values(), *RESERVED_TYPES.values()]
KIND: dict[str, int] = {name: i for i, name in enumerate(KIND_NAMES)}
UNDEFINED = 0
_TYPE_OF_KIND = {**{r.name: (r.typ, r.sub) for r in RECORDS.values()},
                 **{name: key for key, name in _SKIPPED.items()}}  # fmt: skip
KIND_OF = np.zeros(1 << 16, dtype=np.int16)
for _typ, _name in RESERVED_TYPES.items():
    KIND_OF[_typ << 8 : (_typ + 1) << 8] = KIND[_name]
# The plausible REC_LEN of each kind: what its fields allow. An undefined type has none.
MIN_LENGTH = np.zeros(len(KIND_NAMES), dtype=np.int64)
MAX_LENGTH = np.full(len(KIND_NAMES), MAX_BODY, dtype=np.int64)
MAX_LENGTH[UNDEFINED] = -1
for _name, (_typ, _sub) in _TYPE_OF_KIND.items():
    KIND_OF[(_typ << 8) | _sub] = KIND[_name]
    if _name in RECORDS:
        MIN_LENGTH[KIND[_name]] = RECORDS[_name].min_length
        MAX_LENGTH[KIND[_name]] = RECORDS[_name].max_length


@dataclass(frozen=True)
class _Header:
    """One record's header: where it starts in the stream, its type and REC_LEN."""

    offset: int
    typ: int
    sub: int
    length: int

    @property
    def kind(self) -> int:
        return int(KIND_OF[(self.typ << 8) | self.sub])

    @property
    def name(self) -> str:
        return KIND_NAMES[self.kind] if self.kind != UNDEFINED else f"{self.typ}/{self.sub}"

    @property
    def plausible(self) -> bool:
        return bool(MIN_LENGTH[self.kind] <= self.length <= MAX_LENGTH[self.kind])

    def error(self, path: str, previous: _Header | None) -> StdfError:
        """Why this record cannot be what its header says."""
        if self.kind == UNDEFINED:
            suspect = "" if previous is None else (
                f"; the previous record, {previous.name} at byte {previous.offset} "
                f"(REC_LEN {previous.length}), or one before it, has a wrong REC_LEN"
            )  # fmt: skip
            return UndefinedRecordError(
                path,
                f"undefined record type (REC_TYP {self.typ}, REC_SUB {self.sub}): "
                f"the reader has lost the record boundaries{suspect}",
                self.offset,
            )
        if self.length < MIN_LENGTH[self.kind]:
            reason = (
                f"record length {self.length} cannot hold the required fields of {self.name} "
                f"({MIN_LENGTH[self.kind]} bytes)"
            )
        else:
            reason = (
                f"implausible REC_LEN: {self.name} of {self.length} bytes: "
                f"a {self.name} holds at most {MAX_LENGTH[self.kind]}"
            )
        return RecordLengthError(path, reason, self.offset, self.name)


def _header_at(buf: np.ndarray, p: int, base: int, little: bool) -> _Header:
    length = int.from_bytes(bytes(buf[p : p + 2]), "little" if little else "big")
    return _Header(base + p, int(buf[p + 2]), int(buf[p + 3]), length)


@dataclass
class Chunk:
    """The whole records of one buffer fill: body offsets, lengths and kinds."""

    buf: np.ndarray
    offsets: np.ndarray
    lengths: np.ndarray
    kinds: np.ndarray
    base: int  # stream offset of buf[0]
    consumed: int  # stream bytes decoded once this chunk is done
    little: bool
    implausible: int  # the first record of an undefined type or impossible length; -1: none

    def rows(self, kind: str) -> np.ndarray:
        return np.flatnonzero(self.kinds == KIND[kind])

    def header(self, i: int) -> _Header:
        return _header_at(self.buf, int(self.offsets[i]) - HEADER_SIZE, self.base, self.little)

    def check(self, path: str, previous: _Header | None) -> None:
        """Raise on the first record whose type is undefined or whose REC_LEN its type
        cannot have (``previous``: the last record before this chunk)."""
        i = self.implausible
        if i >= 0:
            raise self.header(i).error(path, self.header(i - 1) if i else previous)


@dataclass
class DecodeFacts:
    """What decoding a file saw besides its tables; pass one to ``read_tables`` to fill it."""

    records: dict[str, int] = field(default_factory=dict)  # by type
    last_record: str | None = None  # the type of the file's last record
    # What was decoded with doubt or skipped (records not decoded, parts without a PRR),
    # counted: what the tables leave out of the file.
    warnings: list[str] = field(default_factory=list)

    @property
    def ends_with_mrr(self) -> bool:
        """Whether the tester finished the file: an MRR is the last record STDF allows."""
        return self.last_record == "MRR"


def scan_chunks(
    path: str, stream: ByteStream, chunk_size: int, digest: Digest | None = None
) -> Iterator[tuple[bool, Chunk]]:
    """Yield (little-endian?, chunk) for each buffer fill, each record of a defined type with
    a plausible length; raises on a truncated end."""
    chunks = ChunkReader(stream, path, chunk_size, digest)
    chunks.fill(0)
    little = byte_order(path, bytes(chunks.buffer[: min(chunks.end, FAR_BYTES)]))
    previous = None  # the last record of the chunks before
    while True:
        buf = chunks.buffer
        offsets, lengths, kinds, stop, implausible = kernels.scan_records(
            buf, 0, chunks.end, little, KIND_OF, MIN_LENGTH, MAX_LENGTH
        )
        chunk = Chunk(
            buf, offsets, lengths, kinds, chunks.base, chunks.base + stop, little, implausible
        )
        chunk.check(path, previous)
        yield little, chunk
        if len(kinds):
            previous = chunk.header(len(kinds) - 1)
        if chunks.eof:
            if stop < chunks.end:
                raise _truncated(path, chunk, stop, chunks.end, previous)
            return
        chunks.fill(stop)


def _truncated(path: str, chunk: Chunk, stop: int, end: int, previous: _Header | None) -> StdfError:
    """The file ends inside the record at ``stop``: cut short, or a record the reader
    should never have reached (an undefined type or an impossible length: lost boundaries)."""
    record = None
    if end - stop >= HEADER_SIZE:
        header = _header_at(chunk.buf, stop, chunk.base, chunk.little)
        if not header.plausible:
            return header.error(path, previous)
        record = header.name
    return TruncatedError(
        path,
        f"file ends inside a record ({end - stop} of its bytes present)",
        chunk.base + stop,
        record,
    )


def read_records(
    src: Source, record_types: list[str] | None = None, chunk_size: int = DEFAULT_CHUNK_SIZE
) -> dict[str, pa.Table]:
    """Every field of every record of the given types (all decodable types by default).

    One Arrow table per record type present, rows in file order, columns
    named as in the STDF specification plus ``byte_offset``. Fields a record
    leaves out are null.
    """
    path = source_name(src)
    wanted = list(RECORDS) if record_types is None else [t.upper() for t in record_types]
    unknown = set(wanted) - set(RECORDS)
    if unknown:
        raise ValueError(f"unknown record types: {sorted(unknown)}")
    pieces: dict[str, list[pa.Table]] = {name: [] for name in wanted}
    with open_stdf(src) as stream:
        for little, chunk in scan_chunks(path, stream, chunk_size):
            for name in wanted:
                rows = chunk.rows(name)
                if len(rows):
                    block = RecordBlock(
                        chunk.buf, chunk.offsets[rows], chunk.lengths[rows], RECORDS[name], little
                    )
                    columns = {
                        "byte_offset": pa.array(chunk.base + chunk.offsets[rows] - HEADER_SIZE)
                    }
                    columns |= {f.name: block.column(f.name) for f in RECORDS[name].fields}
                    pieces[name].append(pa.table(columns))
    return {name: pa.concat_tables(tables) for name, tables in pieces.items() if tables}


def record_counts(src: Source, chunk_size: int = DEFAULT_CHUNK_SIZE) -> dict[str, int]:
    """How many records of each type the file holds (skipped ones too: PSR, IMAGE, ...)."""
    path = source_name(src)
    totals = np.zeros(len(KIND_NAMES), dtype=np.int64)
    with open_stdf(src) as stream:
        for _, chunk in scan_chunks(path, stream, chunk_size):
            totals += np.bincount(chunk.kinds, minlength=len(KIND_NAMES))
    return {KIND_NAMES[k]: int(n) for k, n in enumerate(totals) if n}
