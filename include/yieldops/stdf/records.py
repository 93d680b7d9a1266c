"""Decoded fields of many records of one type, turned into Arrow arrays."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from . import kernels
from .spec import ARRAY, BN, C1, CN, DN, N1, R4, R8, VN, RecordSpec

_INTEGER_TYPES = {
    "U1": pa.uint8(), "U2": pa.uint16(), "U4": pa.uint32(), "U8": pa.uint64(),
    "I1": pa.int8(), "I2": pa.int16(), "I4": pa.int32(), "I8": pa.int64(),
    "B1": pa.uint8(), "N1": pa.uint8(),
}  # fmt: skip


def _validity(mask: np.ndarray) -> pa.Buffer | None:
    return None if mask.all() else pa.py_buffer(np.packbits(mask, bitorder="little"))


class RecordBlock:
    """The first ``nfields`` fields of a set of records of one type.

    Built by one call of the compiled decoder; columns are materialised on
    demand, so a caller pays only for the fields it reads.
    """

    def __init__(
        self,
        buf: np.ndarray,
        offsets: np.ndarray,
        lengths: np.ndarray,
        spec: RecordSpec,
        little: bool,
        nfields: int | None = None,
    ) -> None:
        self.buf = buf
        self.offsets = offsets
        self.lengths = lengths
        self.spec = spec
        self.little = little
        fields = spec.fields[: len(spec.fields) if nfields is None else nfields]
        self.nfields = len(fields)
        codes = np.array([f.code for f in fields], dtype=np.int64)
        refs = np.array(
            [spec.index(f.count_field) if f.count_field else -1 for f in fields], dtype=np.int64
        )
        n = len(offsets)
        self.ival = np.zeros((n, self.nfields), dtype=np.int64)
        self.fval = np.zeros((n, self.nfields), dtype=np.float64)
        self.cnt = np.zeros((n, self.nfields), dtype=np.int64)
        self.present = np.zeros(n, dtype=np.int64)
        kernels.decode_fields(
            buf, offsets, lengths, codes, refs, little, self.ival, self.fval, self.cnt, self.present
        )

    def take(self, rows: np.ndarray) -> RecordBlock:
        """The same decoded fields for a subset of the records."""
        subset = object.__new__(RecordBlock)
        subset.__dict__.update(self.__dict__)
        for name in ("offsets", "lengths", "ival", "fval", "cnt", "present"):
            setattr(subset, name, getattr(self, name)[rows])
        return subset

    def __len__(self) -> int:
        return len(self.present)

    def has(self, name: str) -> np.ndarray:
        """Mask of the records that carry field ``name``."""
        return self.present > self.spec.index(name)

    def ints(self, name: str) -> np.ndarray:
        """Raw integer values (0 where absent); use with ``has``."""
        return self.ival[:, self.spec.index(name)]

    def floats(self, name: str) -> np.ndarray:
        return self.fval[:, self.spec.index(name)]

    def column(self, name: str) -> pa.Array:
        """Field ``name`` as an Arrow array; null where a record omits it."""
        i = self.spec.index(name)
        field = self.spec.fields[i]
        valid = self.present > i
        code = field.code
        if code >= ARRAY:
            return self._array_column(i, code - ARRAY, valid)
        if code in (R4, R8):
            values = self.fval[:, i].astype(np.float32 if code == R4 else np.float64)
            return pa.array(values, mask=~valid)
        if code in (CN, C1):
            return self.text(name)
        if code in (BN, DN, VN):
            offsets, data = kernels.gather_bytes(
                self.buf, self.ival[:, i], self._byte_counts(i, code), valid
            )
            return pa.Array.from_buffers(
                pa.binary(),
                len(self),
                [_validity(valid), pa.py_buffer(offsets), pa.py_buffer(data)],
            )
        values = self.ival[:, i].astype(_INTEGER_TYPES[field.type].to_pandas_dtype())
        return pa.array(values, mask=~valid)

    def text(self, name: str, mask: np.ndarray | None = None) -> pa.Array:
        """A Cn or C1 field as a string array (latin-1 decoded); null where absent or masked."""
        i = self.spec.index(name)
        valid = self.present > i if mask is None else (self.present > i) & mask
        if self.spec.fields[i].code == C1:  # decoded as a character code: gather from those
            source = self.ival[:, i].astype(np.uint8)
            starts = np.arange(len(self), dtype=np.int64)
            lengths = np.ones(len(self), dtype=np.int64)
        else:
            source, starts, lengths = self.buf, self.ival[:, i], self.cnt[:, i]
        offsets, data = kernels.gather_text(source, starts, lengths, valid)
        return pa.Array.from_buffers(
            pa.string(), len(self), [_validity(valid), pa.py_buffer(offsets), pa.py_buffer(data)]
        )

    def _byte_counts(self, i: int, code: int) -> np.ndarray:
        if code == DN:
            return (self.cnt[:, i] + 7) // 8
        if code == VN:  # raw bytes up to the record end: items are kept undecoded
            return self.offsets + self.lengths - self.ival[:, i]
        return self.cnt[:, i]

    def _array_column(self, i: int, element: int, valid: np.ndarray) -> pa.Array:
        starts, counts = self.ival[:, i], self.cnt[:, i]
        if element == CN:
            return pa.array(
                [self._strings(s, c) if v else None for s, c, v in zip(starts, counts, valid)],
                type=pa.list_(pa.string()),
            )
        is_float = element in (R4, R8)
        offsets, ints, floats = kernels.gather_numbers(
            self.buf, starts, counts, valid, element, self.little, is_float
        )
        if is_float:
            values = pa.array(floats.astype(np.float32 if element == R4 else np.float64))
        else:
            name = "N1" if element == N1 else self.spec.fields[i].type
            values = pa.array(ints.astype(_INTEGER_TYPES[name].to_pandas_dtype()))
        return pa.ListArray.from_arrays(pa.array(offsets), values, mask=pa.array(~valid))

    def _strings(self, start: int, count: int) -> list[str]:
        # Only PLR has string arrays; it is rare enough to walk in Python.
        out, p = [], int(start)
        for _ in range(int(count)):
            length = int(self.buf[p])
            out.append(bytes(self.buf[p + 1 : p + 1 + length]).decode("latin-1"))
            p += 1 + length
        return out
