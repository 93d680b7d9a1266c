"""Compiled kernels of the STDF reader (numba).

The reader never loops over records in Python: these kernels scan record
headers, decode the fields of many records of one type at once following
the spec's type codes, and gather strings and arrays into Arrow-ready
buffers. They run without the GIL and are cached on disk after the first
compile.
"""

from __future__ import annotations

import numba as nb
import numpy as np

from .spec import (
    ALL_HEADS,
    ARRAY,
    BN,
    CN,
    DN,
    FIXED_SIZES,
    HEADER_SIZE,
    I1,
    I2,
    I4,
    I8,
    N1,
    R4,
    R8,
    TYPE_CODES,
    VN,
    VN_TYPES,
)

_jit = nb.njit(cache=True, nogil=True)

# Bytes of one element by type code (0: variable length).
ELEMENT_SIZE = np.zeros(64, dtype=np.int64)
for _type, _size in FIXED_SIZES.items():
    ELEMENT_SIZE[TYPE_CODES[_type]] = _size
# GDR Vn item type byte -> scalar type code (0 pad byte, -1 unknown).
VN_ITEM_CODE = np.full(256, -1, dtype=np.int64)
for _vn, _type in VN_TYPES.items():
    VN_ITEM_CODE[_vn] = TYPE_CODES.get(_type, 0)  # B0: a pad byte


@_jit
def read_uint(buf, p, size, little):
    # The common sizes are spelled out: this is the innermost step of every decode.
    if size == 1:
        return np.uint64(buf[p])
    if size == 2:
        lo, hi = (buf[p], buf[p + 1]) if little else (buf[p + 1], buf[p])
        return np.uint64(lo) | (np.uint64(hi) << np.uint64(8))
    value = np.uint64(0)
    for i in range(size):
        byte = np.uint64(buf[p + i] if little else buf[p + size - 1 - i])
        value |= byte << np.uint64(8 * i)
    return value


@_jit
def read_int(buf, p, size, little):
    value = np.int64(read_uint(buf, p, size, little))
    if size < 8 and value >= (np.int64(1) << (8 * size - 1)):
        value -= np.int64(1) << (8 * size)
    return value


@_jit
def read_f32(buf, p, little, scratch32, scratch32_as_f32):
    scratch32[0] = np.uint32(read_uint(buf, p, 4, little))
    return np.float64(scratch32_as_f32[0])


@_jit
def read_f64(buf, p, little, scratch64, scratch64_as_f64):
    scratch64[0] = read_uint(buf, p, 8, little)
    return scratch64_as_f64[0]


@_jit
def count_records(buf, start, end, little):
    """Records wholly inside buf[start:end], and where the first partial one starts."""
    n = 0
    p = start
    while p + HEADER_SIZE <= end:
        length = np.int64(read_uint(buf, p, 2, little))
        if p + HEADER_SIZE + length > end:
            break
        n += 1
        p += HEADER_SIZE + length
    return n, p


@_jit
def scan_records(buf, start, end, little, kind_of, min_length, max_length):
    """Offsets (of the body), lengths and kinds of the whole records in buf[start:end], and
    the index of the first whose length its kind cannot have (-1: none)."""
    n, stop = count_records(buf, start, end, little)
    offsets = np.empty(n, dtype=np.int64)
    lengths = np.empty(n, dtype=np.int64)
    kinds = np.empty(n, dtype=np.int16)
    implausible = -1
    p = start
    for i in range(n):
        length = np.int64(read_uint(buf, p, 2, little))
        kind = kind_of[(np.int64(buf[p + 2]) << 8) | np.int64(buf[p + 3])]
        offsets[i] = p + HEADER_SIZE
        lengths[i] = length
        kinds[i] = kind
        if implausible < 0 and (length < min_length[kind] or length > max_length[kind]):
            implausible = i
        p += HEADER_SIZE + length
    return offsets, lengths, kinds, stop, implausible


@_jit
def _string_size(buf, p, end, code, little):
    """Bytes taken at p by a Cn, Bn or Dn value; -1 if its length does not fit."""
    if code == DN:
        return -1 if p + 2 > end else 2 + (np.int64(read_uint(buf, p, 2, little)) + 7) // 8
    return -1 if p >= end else 1 + np.int64(buf[p])


@_jit
def _variable_size(buf, p, end, code, count, little):
    """Bytes taken at p by a variable-length field or array; -1 if it runs past end."""
    if code >= ARRAY:
        element = code - ARRAY
        if element == N1:
            return (count + 1) // 2
        if element == CN:
            q = p
            for _ in range(count):
                if q >= end:
                    return -1
                q += 1 + np.int64(buf[q])
            return q - p
        return count * ELEMENT_SIZE[element]
    if code != VN:
        return _string_size(buf, p, end, code, little)
    q = p  # GDR generic data: count items, each a type byte then a value
    for _ in range(count):
        if q >= end:
            return -1
        item = VN_ITEM_CODE[buf[q]]
        q += 1
        if item < 0:
            return -1
        size = ELEMENT_SIZE[item] if item > 0 else 0
        if item == CN or item == BN or item == DN:
            size = _string_size(buf, q, end, item, little)
            if size < 0:
                return -1
        q += size
    return q - p


@_jit
def decode_fields(buf, offsets, lengths, codes, count_refs, little, ival, fval, cnt, present):
    """Decode the first ``len(codes)`` fields of each record.

    Integers go to ``ival``, floats to ``fval``. Strings, byte fields and
    arrays put their data offset in ``ival`` and their length (bytes, bits
    for Dn, elements for arrays) in ``cnt``. A record stops at the first
    field that is absent or does not fit; ``present`` holds how many fields
    it has, since STDF only ever omits trailing fields.
    """
    scratch32 = np.zeros(1, dtype=np.uint32)
    as_f32 = scratch32.view(np.float32)
    scratch64 = np.zeros(1, dtype=np.uint64)
    as_f64 = scratch64.view(np.float64)
    nfields = codes.shape[0]
    for r in range(offsets.shape[0]):
        p = offsets[r]
        end = p + lengths[r]
        f = 0
        while f < nfields:
            code = codes[f]
            size = ELEMENT_SIZE[code] if code < ARRAY else 0
            if size > 0:
                if p + size > end:
                    break
                if code == R4:
                    fval[r, f] = read_f32(buf, p, little, scratch32, as_f32)
                elif code == R8:
                    fval[r, f] = read_f64(buf, p, little, scratch64, as_f64)
                elif code == I1 or code == I2 or code == I4 or code == I8:
                    ival[r, f] = read_int(buf, p, size, little)
                else:
                    ival[r, f] = np.int64(read_uint(buf, p, size, little))
            else:
                count = ival[r, count_refs[f]] if count_refs[f] >= 0 else 0
                size = _variable_size(buf, p, end, code, count, little)
                if size < 0 or p + size > end:
                    break
                if code == CN or code == BN:
                    ival[r, f] = p + 1
                    cnt[r, f] = size - 1
                elif code == DN:
                    ival[r, f] = p + 2
                    cnt[r, f] = np.int64(read_uint(buf, p, 2, little))
                else:
                    ival[r, f] = p
                    cnt[r, f] = count if code >= ARRAY or code == VN else size
            p += size
            f += 1
        present[r] = f


_MIX = np.uint64(0x9E3779B97F4A7C15)  # 2**64 / golden ratio: spreads a product's bits
_FOLD = np.uint64(29)


@_jit
def _word(buf, p, size):
    """``size`` (at most 8) bytes from ``p`` as one little-endian integer."""
    word = np.uint64(0)
    for k in range(size):
        word |= np.uint64(buf[p + k]) << np.uint64(8 * k)
    return word


@_jit
def test_keys(buf, nums, starts, lengths, named):
    """A 64-bit hash of each record's test number and name bytes (no name where ``named``
    is false), mixed eight bytes at a time: tells tests apart without making a string
    per record."""
    n = nums.shape[0]
    keys = np.empty(n, dtype=np.uint64)
    for i in range(n):
        length = lengths[i] if named[i] else 0
        h = ((np.uint64(nums[i]) << np.uint64(32)) | np.uint64(length)) * _MIX
        p, end = starts[i], starts[i] + length
        while p < end:
            size = min(8, end - p)
            h = (h ^ _word(buf, p, size)) * _MIX
            h ^= h >> _FOLD
            p += size
        keys[i] = h
    return keys


@_jit
def string_spans(buf, offsets, lengths, at):
    """Start and length of the Cn string at byte ``at`` of each record (length 0 when the
    record ends before it, or cuts it)."""
    n = offsets.shape[0]
    starts = offsets + at + 1
    sizes = np.zeros(n, dtype=np.int64)
    for i in range(n):
        if lengths[i] > at:
            size = np.int64(buf[offsets[i] + at])
            if at + 1 + size <= lengths[i]:
                sizes[i] = size
    return starts, sizes


@_jit
def first_rows(codes, ncodes):
    """The first row of each code (codes 0 .. ncodes - 1, each present)."""
    first = np.full(ncodes, -1, dtype=np.int64)
    for i in range(codes.shape[0]):
        if first[codes[i]] < 0:
            first[codes[i]] = i
    return first


@_jit
def gather_text(buf, starts, lengths, valid):
    """Concatenate latin-1 strings as UTF-8; returns Arrow offsets and data."""
    n = starts.shape[0]
    offsets = np.zeros(n + 1, dtype=np.int32)
    total = 0
    for i in range(n):
        if valid[i]:
            for j in range(starts[i], starts[i] + lengths[i]):
                total += 2 if buf[j] >= 0x80 else 1
        offsets[i + 1] = total
    data = np.empty(total, dtype=np.uint8)
    q = 0
    for i in range(n):
        if valid[i]:
            for j in range(starts[i], starts[i] + lengths[i]):
                byte = buf[j]
                if byte >= 0x80:
                    data[q] = 0xC0 | (byte >> 6)
                    data[q + 1] = 0x80 | (byte & 0x3F)
                    q += 2
                else:
                    data[q] = byte
                    q += 1
    return offsets, data


@_jit
def gather_bytes(buf, starts, lengths, valid):
    """Concatenate raw byte strings; returns Arrow offsets and data."""
    n = starts.shape[0]
    offsets = np.zeros(n + 1, dtype=np.int32)
    for i in range(n):
        offsets[i + 1] = offsets[i] + (lengths[i] if valid[i] else 0)
    data = np.empty(offsets[n], dtype=np.uint8)
    for i in range(n):
        if valid[i]:
            data[offsets[i] : offsets[i + 1]] = buf[starts[i] : starts[i] + lengths[i]]
    return offsets, data


@_jit
def gather_numbers(buf, starts, counts, valid, code, little, out_float):
    """Concatenate fixed-size array elements (or N1 nibbles); Arrow list offsets and values."""
    n = starts.shape[0]
    offsets = np.zeros(n + 1, dtype=np.int32)
    for i in range(n):
        offsets[i + 1] = offsets[i] + (counts[i] if valid[i] else 0)
    ints = np.zeros(0 if out_float else offsets[n], dtype=np.int64)
    floats = np.zeros(offsets[n] if out_float else 0, dtype=np.float64)
    scratch32 = np.zeros(1, dtype=np.uint32)
    as_f32 = scratch32.view(np.float32)
    scratch64 = np.zeros(1, dtype=np.uint64)
    as_f64 = scratch64.view(np.float64)
    size = ELEMENT_SIZE[code]
    for i in range(n):
        if not valid[i]:
            continue
        for j in range(counts[i]):
            k = offsets[i] + j
            if code == N1:
                byte = buf[starts[i] + j // 2]
                ints[k] = (byte >> 4) if j % 2 else (byte & 0x0F)
            elif code == R4:
                floats[k] = read_f32(buf, starts[i] + 4 * j, little, scratch32, as_f32)
            elif code == R8:
                floats[k] = read_f64(buf, starts[i] + 8 * j, little, scratch64, as_f64)
            elif code == I1 or code == I2 or code == I4 or code == I8:
                ints[k] = read_int(buf, starts[i] + size * j, size, little)
            else:
                ints[k] = np.int64(read_uint(buf, starts[i] + size * j, size, little))
    return offsets, ints, floats


@_jit
def assign_parts(buf, offsets, kinds, role, head_at, site_at, open_part, open_wafer, counters):
    """Give every part record its part number and wafer number, in file order.

    A part opens at PIR and closes at PRR, per head and site, so results of
    interleaved sites land on the right die; a result or PRR with no open
    part (missing PIR) opens one. Wafers open at WIR and close at WRR per
    head. State lives in ``open_part``, ``open_wafer`` and ``counters``
    (next part, next wafer, PIRs that found their site's part still open: PRRs
    missed) so it carries over from one chunk to the next.
    """
    n = offsets.shape[0]
    part_of = np.full(n, -1, dtype=np.int64)
    wafer_of = np.full(n, -1, dtype=np.int64)
    for r in range(n):
        what = role[kinds[r]]
        if what == 0:
            continue
        p = offsets[r]
        head = np.int64(buf[p + head_at[kinds[r]]])
        if what == 4 or what == 5:  # WIR, WRR
            if what == 4 or open_wafer[head] < 0:
                open_wafer[head] = counters[1]
                counters[1] += 1
            wafer_of[r] = open_wafer[head]
            if what == 5:
                open_wafer[head] = -1
            continue
        key = head * 256 + np.int64(buf[p + site_at[kinds[r]]])
        if what == 1 and open_part[key] >= 0:  # the open part got no PRR
            counters[2] += 1
        if what == 1 or open_part[key] < 0:  # PIR, or a part without one
            open_part[key] = counters[0]
            counters[0] += 1
        part_of[r] = open_part[key]
        if what == 2:  # PRR
            wafer_of[r] = open_wafer[head] if open_wafer[head] >= 0 else open_wafer[ALL_HEADS]
            open_part[key] = -1
    return part_of, wafer_of


@_jit
def group_by_kind(kinds, nkinds):
    """Record indices grouped by kind, file order kept within a kind (a counting sort);
    the records of kind k are ``order[bounds[k]:bounds[k + 1]]``."""
    bounds = np.zeros(nkinds + 1, dtype=np.int64)
    for k in kinds:
        bounds[k + 1] += 1
    for k in range(nkinds):
        bounds[k + 1] += bounds[k]
    order = np.empty(kinds.shape[0], dtype=np.int64)
    fill = bounds[:-1].copy()
    for i in range(kinds.shape[0]):
        order[fill[kinds[i]]] = i
        fill[kinds[i]] += 1
    return order, bounds
