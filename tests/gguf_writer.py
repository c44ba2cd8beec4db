"""A tiny GGUF writer for tests: metadata of every value type and zero-filled tensors."""

from __future__ import annotations

import struct
from collections.abc import Sequence

U8, I8, U16, I16, U32, I32, F32, BOOL, STRING, ARRAY, U64, I64, F64 = range(13)
_FMT = {U8: "<B", I8: "<b", U16: "<H", I16: "<h", U32: "<I", I32: "<i", F32: "<f", BOOL: "<?",
        U64: "<Q", I64: "<q", F64: "<d"}


def gguf_string(text: str) -> bytes:
    data = text.encode()
    return struct.pack("<Q", len(data)) + data


def _value(vtype: int, value: object) -> bytes:
    if vtype == STRING:
        assert isinstance(value, str)
        return gguf_string(value)
    return struct.pack(_FMT[vtype], value)


def gguf_bytes(
    kv: Sequence[tuple[str, int, object]] = (),
    tensors: Sequence[tuple[str, tuple[int, ...], int]] = (),
    *,
    version: int = 3,
    alignment: int = 32,
) -> bytes:
    """kv: (key, type, value), arrays as (key, ARRAY, (elem_type, [values])); tensors:
    (name, shape, ggml_type) of F32 (0) / Q4_1 (3) data, zero-filled."""
    out = bytearray(b"GGUF" + struct.pack("<IQQ", version, len(tensors), len(kv)))
    for key, vtype, value in kv:
        out += gguf_string(key) + struct.pack("<I", vtype)
        if vtype == ARRAY:
            assert isinstance(value, tuple)
            etype, items = value
            out += struct.pack("<IQ", etype, len(items)) + b"".join(_value(etype, v) for v in items)
        else:
            out += _value(vtype, value)
    offset, sizes = 0, {0: (1, 4), 3: (32, 20)}
    for name, shape, ggml_type in tensors:
        out += gguf_string(name) + struct.pack("<I", len(shape)) + b"".join(struct.pack("<Q", d) for d in shape)
        out += struct.pack("<IQ", ggml_type, offset)
        block, size = sizes[ggml_type]
        count = 1
        for d in shape:
            count *= d
        offset += -(-(count // block * size) // alignment) * alignment
    out += bytes(-len(out) % alignment) + bytes(offset)
    return bytes(out)
