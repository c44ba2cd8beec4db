"""A pure-Python reader for GGUF (v2/v3) metadata and tensor infos.

GGUF files come from users and registries, so this is a security boundary: a 4-byte file crashed
Ollama (CVE-2024-39720) and an unchecked length leaked memory (CVE-2026-7482). Every count and
length is checked against the bytes left in the file before it is used, nothing is allocated
from an unchecked number, and any malformed input raises GGUFError. The file is read through a
buffered reader; tensor data is never read.

Layout (little endian): magic "GGUF", u32 version, u64 tensor_count, u64 kv_count, the KV pairs
(string key, u32 type, value), the tensor infos (name, u32 n_dims, u64 dims, u32 ggml type,
u64 offset), padding to `general.alignment`, then the tensor data.
"""

from __future__ import annotations

import dataclasses
import math
import os
import struct
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

GGUFScalar = int | float | bool | str
GGUFValue = GGUFScalar | list[GGUFScalar]

MAGIC = b"GGUF"
MAX_DIMS = 4  # GGML_MAX_DIMS
MAX_INLINE_ARRAY = 1024  # longer arrays (token lists, merges) stay out of `metadata` unless asked
_DEFAULT_ALIGNMENT = 32

# GGUF value type id -> (struct format, size); 8 = string, 9 = array.
_SCALARS: dict[int, tuple[str, int]] = {
    0: ("<B", 1), 1: ("<b", 1), 2: ("<H", 2), 3: ("<h", 2), 4: ("<I", 4), 5: ("<i", 4),
    6: ("<f", 4), 7: ("<?", 1), 10: ("<Q", 8), 11: ("<q", 8), 12: ("<d", 8),
}
_STRING, _ARRAY = 8, 9

# ggml_type id -> (name, elements per block, bytes per block), from ggml.h / gguf-py.
GGML_TYPES: dict[int, tuple[str, int, int]] = {
    0: ("F32", 1, 4), 1: ("F16", 1, 2), 2: ("Q4_0", 32, 18), 3: ("Q4_1", 32, 20),
    6: ("Q5_0", 32, 22), 7: ("Q5_1", 32, 24), 8: ("Q8_0", 32, 34), 9: ("Q8_1", 32, 40),
    10: ("Q2_K", 256, 84), 11: ("Q3_K", 256, 110), 12: ("Q4_K", 256, 144), 13: ("Q5_K", 256, 176),
    14: ("Q6_K", 256, 210), 15: ("Q8_K", 256, 292), 16: ("IQ2_XXS", 256, 66), 17: ("IQ2_XS", 256, 74),
    18: ("IQ3_XXS", 256, 98), 19: ("IQ1_S", 256, 50), 20: ("IQ4_NL", 32, 18), 21: ("IQ3_S", 256, 110),
    22: ("IQ2_S", 256, 82), 23: ("IQ4_XS", 256, 136), 24: ("I8", 1, 1), 25: ("I16", 1, 2),
    26: ("I32", 1, 4), 27: ("I64", 1, 8), 28: ("F64", 1, 8), 29: ("IQ1_M", 256, 56),
    30: ("BF16", 1, 2), 34: ("TQ1_0", 256, 54), 35: ("TQ2_0", 256, 66), 39: ("MXFP4", 32, 17),
    40: ("NVFP4", 64, 36), 41: ("Q1_0", 128, 18),
}

# llama.h LLAMA_FTYPE_* -> the name Ollama shows as quantization_level.
FILE_TYPES: dict[int, str] = {
    0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 4: "Q4_1_F16", 7: "Q8_0", 8: "Q5_0", 9: "Q5_1",
    10: "Q2_K", 11: "Q3_K_S", 12: "Q3_K_M", 13: "Q3_K_L", 14: "Q4_K_S", 15: "Q4_K_M", 16: "Q5_K_S",
    17: "Q5_K_M", 18: "Q6_K", 19: "IQ2_XXS", 20: "IQ2_XS", 21: "Q2_K_S", 22: "IQ3_XS", 23: "IQ3_XXS",
    24: "IQ1_S", 25: "IQ4_NL", 26: "IQ3_S", 27: "IQ3_M", 28: "IQ2_S", 29: "IQ2_M", 30: "IQ4_XS",
    31: "IQ1_M", 32: "BF16", 36: "TQ1_0", 37: "TQ2_0", 38: "MXFP4", 39: "NVFP4", 40: "Q1_0",
}

# Special token ids whose strings we resolve: tokenizer.ggml.<kind>_token_id.
_SPECIAL_TOKENS = ("bos", "eos", "eot", "eom", "unknown", "padding", "seperator", "mask")


class GGUFError(ValueError):
    """A file that is not a well-formed GGUF file (truncated, corrupt or unsupported)."""


@dataclasses.dataclass(frozen=True)
class TensorInfo:
    name: str
    shape: tuple[int, ...]
    ggml_type: int
    offset: int  # relative to the start of the data section

    @property
    def type_name(self) -> str:
        return GGML_TYPES.get(self.ggml_type, (f"type{self.ggml_type}", 0, 0))[0]

    @property
    def element_count(self) -> int:
        return math.prod(self.shape)


@dataclasses.dataclass(frozen=True)
class GGUFInfo:
    version: int
    file_size: int
    metadata: dict[str, GGUFValue]
    omitted_arrays: dict[str, int]  # key -> length of arrays left out of `metadata`
    tensors: tuple[TensorInfo, ...]
    special_tokens: dict[str, str]  # "bos" -> "<|im_start|>", resolved from the token list

    @property
    def tensor_count(self) -> int:
        return len(self.tensors)

    @property
    def parameter_count(self) -> int:
        return sum(t.element_count for t in self.tensors)

    def _str(self, key: str) -> str | None:
        value = self.metadata.get(key)
        return value if isinstance(value, str) else None

    def _int(self, key: str) -> int | None:
        value = self.metadata.get(key)
        return value if isinstance(value, int) and not isinstance(value, bool) else None

    @property
    def architecture(self) -> str | None:
        return self._str("general.architecture")

    def _arch_int(self, suffix: str) -> int | None:
        return self._int(f"{self.architecture}.{suffix}") if self.architecture else None

    @property
    def context_length(self) -> int | None:
        return self._arch_int("context_length")

    @property
    def embedding_length(self) -> int | None:
        return self._arch_int("embedding_length")

    @property
    def chat_template(self) -> str | None:
        return self._str("tokenizer.chat_template")

    @property
    def file_type(self) -> str | None:
        """Quantization name as Ollama shows it (`Q4_K_M`), None if the file does not say."""
        ftype = self._int("general.file_type")
        return None if ftype is None else FILE_TYPES.get(ftype, "unknown")

    @property
    def bos_token(self) -> str | None:
        return self.special_tokens.get("bos")

    @property
    def eos_token(self) -> str | None:
        return self.special_tokens.get("eos")

    @property
    def parameter_size(self) -> str:
        return human_number(self.parameter_count)


def human_number(n: int) -> str:
    """Ollama's format.HumanNumber: 134515008 -> "134.52M", 8030261248 -> "8.0B"."""
    for unit, scale, decimals in (("B", 1_000_000_000, 1), ("M", 1_000_000, 2)):
        if n >= scale:
            value = n / scale
            return f"{value:.0f}{unit}" if value == math.floor(value) else f"{value:.{decimals}f}{unit}"
    if n >= 1000:
        return f"{n / 1000:.0f}K"
    return str(n)


class _Reader:
    """Bounded little-endian reads: never reads or allocates past the end of the file."""

    def __init__(self, f: BinaryIO, size: int) -> None:
        self.f, self.size, self.pos = f, size, 0

    @property
    def left(self) -> int:
        return self.size - self.pos

    def need(self, n: int, what: str) -> None:
        if n < 0 or n > self.left:
            raise GGUFError(f"truncated GGUF file: {what} needs {n} bytes at offset {self.pos}, "
                            f"{self.left} left")

    def read(self, n: int, what: str) -> bytes:
        self.need(n, what)
        data = self.f.read(n)
        if len(data) != n:  # the file shrank under us
            raise GGUFError(f"truncated GGUF file: short read of {what} at offset {self.pos}")
        self.pos += n
        return data

    def skip(self, n: int, what: str) -> None:
        self.need(n, what)
        self.f.seek(n, os.SEEK_CUR)
        self.pos += n

    def seek(self, pos: int) -> None:
        self.f.seek(pos)
        self.pos = pos

    def u32(self, what: str) -> int:
        return int(struct.unpack("<I", self.read(4, what))[0])

    def u64(self, what: str) -> int:
        return int(struct.unpack("<Q", self.read(8, what))[0])

    def string(self, what: str) -> str:
        return self.read(self.u64(what), what).decode("utf-8", errors="replace")

    def strings(self, count: int, what: str, keep: Callable[[int], bool]) -> list[tuple[int, str]]:
        """Walk `count` strings, decoding those whose index `keep` accepts.

        Token lists hold ~50k-250k short strings; parsing length prefixes out of 1 MiB windows
        is much faster than one read (or seek) per string.
        """
        out: list[tuple[int, str]] = []
        index = 0
        while index < count:
            window = self.f.read(min(self.left, 1 << 20))
            off = 0
            while index < count and off + 8 <= len(window):
                n = int(struct.unpack_from("<Q", window, off)[0])
                if off + 8 + n > len(window):
                    break
                if keep(index):
                    out.append((index, window[off + 8 : off + 8 + n].decode("utf-8", errors="replace")))
                off += 8 + n
                index += 1
            self.seek(self.pos + off)
            if off == 0:  # a string longer than the window, or the file ends: read it alone
                text = self.string(what)
                if keep(index):
                    out.append((index, text))
                index += 1
        return out

    def scalar(self, vtype: int, what: str) -> GGUFScalar:
        if vtype == _STRING:
            return self.string(what)
        fmt, size = _SCALARS[vtype]
        value: GGUFScalar = struct.unpack(fmt, self.read(size, what))[0]
        return value


def _shown(text: str) -> str:
    return repr(text if len(text) <= 80 else text[:80] + "...")


def _check_type(vtype: int, key: str) -> None:
    if vtype not in _SCALARS and vtype not in (_STRING, _ARRAY):
        raise GGUFError(f"corrupt GGUF file: key {_shown(key)} has unknown value type {vtype}")


def _read_key(r: _Reader, index: int, seen: set[str]) -> str:
    length = r.u64(f"key length of metadata entry {index}")
    if length > 65535:  # the GGUF spec caps keys at 2^16-1 bytes
        raise GGUFError(f"corrupt GGUF file: metadata key {index} is {length} bytes long")
    key = r.read(length, f"key of metadata entry {index}").decode("utf-8", errors="replace")
    if key in seen:  # llama.cpp refuses these too
        raise GGUFError(f"corrupt GGUF file: duplicate key {_shown(key)}")
    seen.add(key)
    return key


def _read_value(r: _Reader, key: str, keep_array: Callable[[str, int], bool],
                omitted: dict[str, int], arrays: dict[str, tuple[int, int, int]]) -> GGUFValue | None:
    name = _shown(key)
    vtype = r.u32(f"type of {name}")
    _check_type(vtype, key)
    if vtype != _ARRAY:
        return r.scalar(vtype, f"value of {name}")
    etype = r.u32(f"array type of {name}")
    _check_type(etype, key)
    if etype == _ARRAY:
        raise GGUFError(f"unsupported GGUF file: key {name} is a nested array")
    count = r.u64(f"array length of {name}")
    # Each element takes at least its scalar size (8 for a string's length), so a count that
    # could not fit in the rest of the file is rejected before any loop or allocation.
    min_size = 8 if etype == _STRING else _SCALARS[etype][1]
    r.need(count * min_size, f"array {name} of {count} elements")
    arrays[key] = (etype, count, r.pos)
    what = f"element of {name}"
    keep = keep_array(key, count)
    if not keep:
        omitted[key] = count
    if etype == _STRING:
        texts = r.strings(count, what, lambda _i: keep)
        return [text for _, text in texts] if keep else None
    if not keep:
        r.skip(count * min_size, f"array {name}")
        return None
    fmt, size = _SCALARS[etype]
    return [value for (value,) in struct.iter_unpack(fmt, r.read(count * size, f"array {name}"))]


def _read_tensor(r: _Reader, index: int) -> TensorInfo:
    name = r.string(f"name of tensor {index}")
    shown = _shown(name)
    n_dims = r.u32(f"dimensions of tensor {shown}")
    if not 1 <= n_dims <= MAX_DIMS:
        raise GGUFError(f"corrupt GGUF file: tensor {shown} has {n_dims} dimensions (max {MAX_DIMS})")
    shape = tuple(r.u64(f"shape of tensor {shown}") for _ in range(n_dims))
    ggml_type = r.u32(f"type of tensor {shown}")
    offset = r.u64(f"offset of tensor {shown}")
    return TensorInfo(name, shape, ggml_type, offset)


def _tensor_nbytes(t: TensorInfo) -> int | None:
    spec = GGML_TYPES.get(t.ggml_type)
    if spec is None:
        return None  # a type newer than this table: its size cannot be checked
    _, block, type_size = spec
    if t.shape[0] % block:
        raise GGUFError(f"corrupt GGUF file: tensor {_shown(t.name)} row of {t.shape[0]} is not a "
                        f"multiple of the {t.type_name} block size {block}")
    return t.element_count // block * type_size


def _resolve_tokens(r: _Reader, metadata: dict[str, GGUFValue],
                    arrays: dict[str, tuple[int, int, int]]) -> dict[str, str]:
    """Look up the special token ids in the token list by walking it once."""
    tokens = arrays.get("tokenizer.ggml.tokens")
    wanted: dict[int, list[str]] = {}
    for kind in _SPECIAL_TOKENS:
        tid = metadata.get(f"tokenizer.ggml.{kind}_token_id")
        if isinstance(tid, int) and not isinstance(tid, bool) and tid >= 0:
            wanted.setdefault(tid, []).append(kind)
    if tokens is None or tokens[0] != _STRING or not wanted:
        return {}
    _, count, start = tokens
    r.seek(start)
    found: dict[str, str] = {}
    for index, text in r.strings(min(count, max(wanted) + 1), "token", wanted.__contains__):
        for kind in wanted[index]:
            found[kind] = text
    return found


def _parse(path: Path, keep_array: Callable[[str, int], bool]) -> GGUFInfo:
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        r = _Reader(f, size)
        if size < 24:
            raise GGUFError(f"not a GGUF file: {size} bytes is too short for a GGUF header")
        magic = r.read(4, "magic")
        if magic != MAGIC:
            raise GGUFError(f"not a GGUF file: bad magic {magic!r}")
        version = r.u32("version")
        if version not in (2, 3):
            if int.from_bytes(version.to_bytes(4, "little"), "big") in (2, 3):
                raise GGUFError("unsupported GGUF file: big-endian files are not supported")
            raise GGUFError(f"unsupported GGUF version {version} (only 2 and 3 are supported)")
        tensor_count, kv_count = r.u64("tensor count"), r.u64("metadata count")
        # Smallest KV: 8-byte key length + 4-byte type + 1-byte value; smallest tensor info:
        # 8 + 4 + 8 + 4 + 8 bytes. Counts that cannot fit are corrupt, whatever follows.
        r.need(kv_count * 13 + tensor_count * 32, f"{kv_count} metadata entries and {tensor_count} tensors")

        metadata: dict[str, GGUFValue] = {}
        omitted: dict[str, int] = {}
        arrays: dict[str, tuple[int, int, int]] = {}
        seen: set[str] = set()
        for i in range(kv_count):
            key = _read_key(r, i, seen)
            value = _read_value(r, key, keep_array, omitted, arrays)
            if value is not None:
                metadata[key] = value

        tensors = tuple(_read_tensor(r, i) for i in range(tensor_count))
        alignment = metadata.get("general.alignment", _DEFAULT_ALIGNMENT)
        if not isinstance(alignment, int) or alignment <= 0 or alignment & (alignment - 1):
            raise GGUFError(f"corrupt GGUF file: general.alignment {alignment!r} is not a power of two")
        data_start = -(-r.pos // alignment) * alignment
        for t in tensors:
            nbytes = _tensor_nbytes(t)
            if nbytes is not None and data_start + t.offset + nbytes > size:
                raise GGUFError(f"truncated GGUF file: data of tensor {_shown(t.name)} ends past the end "
                                f"of the file ({size} bytes)")
        special = _resolve_tokens(r, metadata, arrays)
    return GGUFInfo(version, size, metadata, omitted, tensors, special)


def read_gguf(path: str | os.PathLike[str], *, include_arrays: bool = False) -> GGUFInfo:
    """Read a GGUF file's metadata and tensor infos; arrays longer than MAX_INLINE_ARRAY are
    left out of `metadata` (see `omitted_arrays`) unless include_arrays is true.

    Raises GGUFError for a malformed file and OSError if it cannot be read."""
    return _parse(Path(path), lambda _key, count: include_arrays or count <= MAX_INLINE_ARRAY)


def read_gguf_array(path: str | os.PathLike[str], key: str) -> list[GGUFScalar]:
    """One array from a GGUF file, e.g. `tokenizer.ggml.tokens`, however long."""
    info = _parse(Path(path), lambda k, count: k == key or count <= MAX_INLINE_ARRAY)
    value = info.metadata.get(key)
    if not isinstance(value, list):
        raise KeyError(f"GGUF file has no array {key!r}")
    return value


def is_gguf(path: str | os.PathLike[str]) -> bool:
    """Cheap check of the magic bytes, for telling a GGUF file from anything else."""
    try:
        with open(path, "rb") as f:
            return f.read(4) == MAGIC
    except OSError:
        return False
