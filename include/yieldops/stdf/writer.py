"""Write STDF V4 records in either byte order, driven by the record specs."""

from __future__ import annotations

import struct
from collections.abc import Mapping, Sequence
from typing import Any, BinaryIO

from .spec import (
    CPU_BIG_ENDIAN,
    CPU_LITTLE_ENDIAN,
    MAX_BODY,
    MAX_STRING,
    RECORDS,
    STDF_VERSION,
    VN_TYPES,
    Field,
)

_STRUCT_CODES = {
    "U1": "B", "U2": "H", "U4": "I", "U8": "Q", "I1": "b", "I2": "h", "I4": "i", "I8": "q",
    "R4": "f", "R8": "d", "B1": "B",
}  # fmt: skip
_VN_CODES = {name: code for code, name in VN_TYPES.items()}


def _latin1(value: str | bytes) -> bytes:
    return value if isinstance(value, bytes) else value.encode("latin-1")


class StdfWriter:
    """Writes records to a binary stream.

    ``byte_order`` is ``"<"`` (little-endian) or ``">"`` (big-endian). The
    FAR is written on construction. Fields are given by name; a record stops
    at its last given field, so optional trailing fields are left out the
    way testers do.
    """

    def __init__(self, stream: BinaryIO, byte_order: str = "<") -> None:
        if byte_order not in "<>" or len(byte_order) != 1:
            raise ValueError("byte_order must be '<' or '>'")
        self.stream = stream
        self.byte_order = byte_order
        cpu_type = CPU_LITTLE_ENDIAN if byte_order == "<" else CPU_BIG_ENDIAN
        self.write("FAR", CPU_TYPE=cpu_type, STDF_VER=STDF_VERSION)

    def write(self, record: str, **values: Any) -> None:
        self.stream.write(self.encode(record, values))

    def encode(self, record: str, values: Mapping[str, Any]) -> bytes:
        spec = RECORDS[record]
        unknown = set(values) - {f.name for f in spec.fields}
        if unknown:
            raise ValueError(f"{record} has no field(s) {sorted(unknown)}")
        given = [i for i, f in enumerate(spec.fields) if f.name in values]
        last = max(given, default=-1)
        body = b"".join(self._field(f, values.get(f.name), values) for f in spec.fields[: last + 1])
        if len(body) > MAX_BODY:
            raise ValueError(f"{record} body is {len(body)} bytes, over the STDF limit")
        return struct.pack(self.byte_order + "HBB", len(body), spec.typ, spec.sub) + body

    def _field(self, field: Field, value: Any, values: Mapping[str, Any]) -> bytes:
        if field.count_field is not None and field.is_array:  # a kxT array
            items = list(value or ())
            count = values.get(field.count_field, 0) or 0
            if len(items) != count:
                raise ValueError(
                    f"{field.name} has {len(items)} items, {field.count_field}={count}"
                )
            if field.type == "N1":
                return _nibbles(items)
            return b"".join(self._scalar(field.type, item) for item in items)
        return self._scalar(field.type, value)

    def _scalar(self, stdf_type: str, value: Any) -> bytes:
        if stdf_type == "Cn":
            data = _latin1(value or "")
            if len(data) > MAX_STRING:
                raise ValueError(f"Cn string longer than {MAX_STRING} bytes: {data[:20]!r}...")
            return bytes([len(data)]) + data
        if stdf_type == "C1":
            return _latin1(value or " ")[:1].ljust(1)
        if stdf_type == "Bn":
            data = bytes(value or b"")
            return bytes([len(data)]) + data
        if stdf_type == "Dn":
            bits, data = value if value else (0, b"")
            return struct.pack(self.byte_order + "H", bits) + bytes(data)
        if stdf_type == "Vn":
            return self._generic_data(value or ())
        if stdf_type == "N1":
            return bytes([value & 0x0F])
        return struct.pack(
            self.byte_order + _STRUCT_CODES[stdf_type], 0 if value is None else value
        )

    def _generic_data(self, items: Sequence[tuple[str, Any]]) -> bytes:
        out = bytearray()
        for stdf_type, value in items:
            out.append(_VN_CODES[stdf_type])
            if stdf_type != "B0":
                out += self._scalar(stdf_type, value)
        return bytes(out)


def _nibbles(values: Sequence[int]) -> bytes:
    """Pack 4-bit values two per byte, first value in the low nibble."""
    padded = [*values, 0] if len(values) % 2 else list(values)
    return bytes(
        (padded[i] & 0x0F) | ((padded[i + 1] & 0x0F) << 4) for i in range(0, len(padded), 2)
    )
