"""Real GGUF files that llama.cpp loads, written with the `gguf` package for tests:

- `write_tiny_llama`: a random-weights llama model in F16 (or F32) with SmolLM2's tokenizer and
  chat template, small enough to quantize in about a second (rows of 256 and 512: k-quants
  need multiples of 256);
- `write_lora`: a LoRA adapter for SmolLM2-135M (the demo model) on its attention queries, as
  llama-adapter.cpp reads one: general.type=adapter, adapter.type=lora, adapter.lora.alpha,
  F32 `blk.N.attn_q.weight.lora_a` [n_embd -> rank] and `.lora_b` [rank -> n_embd].
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from pathlib import Path

import gguf
import numpy as np

from herd.demo import demo_gguf
from herd.store.gguf import GGUFInfo, read_gguf

SMOLLM_EMBED = 576
SMOLLM_LAYERS = 30


@functools.lru_cache(maxsize=1)
def smollm_info() -> GGUFInfo:
    return read_gguf(demo_gguf(), include_arrays=True)


def _add_tokenizer(writer: gguf.GGUFWriter) -> int:
    """SmolLM2's tokenizer and chat template; returns the vocabulary size."""
    meta = smollm_info().metadata
    vocab, types, merges = (meta[f"tokenizer.ggml.{k}"] for k in ("tokens", "token_type", "merges"))
    bos, eos = meta["tokenizer.ggml.bos_token_id"], meta["tokenizer.ggml.eos_token_id"]
    assert isinstance(vocab, list) and isinstance(types, list) and isinstance(merges, list)  # include_arrays
    assert isinstance(bos, int) and isinstance(eos, int)
    tokens = [str(t) for t in vocab]
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(str(meta["tokenizer.ggml.pre"]))
    writer.add_token_list(tokens)
    writer.add_token_types([int(t) for t in types])
    writer.add_token_merges([str(m) for m in merges])
    writer.add_bos_token_id(bos)
    writer.add_eos_token_id(eos)
    writer.add_chat_template(str(meta["tokenizer.chat_template"]))
    return len(tokens)


def write_tiny_llama(path: Path, *, dtype: str = "F16", n_embd: int = 256, n_ff: int = 512, n_layer: int = 2,
                     n_head: int = 4, seed: int = 0) -> Path:
    """A llama-architecture model with random weights; 2-d weights in `dtype` (F16 or F32)."""
    rng = np.random.default_rng(seed)
    float_type = {"F16": np.float16, "F32": np.float32}[dtype]
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_type("model")
    writer.add_name("herd tiny llama")
    writer.add_context_length(512)
    writer.add_embedding_length(n_embd)
    writer.add_feed_forward_length(n_ff)
    writer.add_block_count(n_layer)
    writer.add_head_count(n_head)
    writer.add_head_count_kv(n_head)
    writer.add_rope_dimension_count(n_embd // n_head)
    writer.add_rope_freq_base(10000.0)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_file_type({"F16": 1, "F32": 0}[dtype])
    n_vocab = _add_tokenizer(writer)

    def matrix(rows: int, cols: int) -> np.ndarray:  # numpy (out, in) is ggml [in, out]
        return rng.normal(0.0, 0.05, (rows, cols)).astype(float_type)

    writer.add_tensor("token_embd.weight", matrix(n_vocab, n_embd))  # tied: no output.weight
    writer.add_tensor("output_norm.weight", np.ones(n_embd, dtype=np.float32))
    for i in range(n_layer):
        writer.add_tensor(f"blk.{i}.attn_norm.weight", np.ones(n_embd, dtype=np.float32))
        for name in ("attn_q", "attn_k", "attn_v", "attn_output"):
            writer.add_tensor(f"blk.{i}.{name}.weight", matrix(n_embd, n_embd))
        writer.add_tensor(f"blk.{i}.ffn_norm.weight", np.ones(n_embd, dtype=np.float32))
        writer.add_tensor(f"blk.{i}.ffn_gate.weight", matrix(n_ff, n_embd))
        writer.add_tensor(f"blk.{i}.ffn_up.weight", matrix(n_ff, n_embd))
        writer.add_tensor(f"blk.{i}.ffn_down.weight", matrix(n_embd, n_ff))
    _finish(writer)
    return path


def write_lora(path: Path, *, zero: bool = False, rank: int = 8, std: float = 0.2, arch: str = "llama",
               n_embd: int = SMOLLM_EMBED, layers: Iterable[int] = range(SMOLLM_LAYERS), seed: int = 0) -> Path:
    """A LoRA adapter on every layer's attn_q; `zero` makes lora_b zero, so it changes nothing."""
    rng = np.random.default_rng(seed)
    writer = gguf.GGUFWriter(str(path), arch)
    writer.add_type("adapter")
    writer.add_string("adapter.type", "lora")
    writer.add_float32("adapter.lora.alpha", float(rank))  # scale alpha / rank = 1
    for i in layers:
        lora_a = rng.normal(0.0, std, (rank, n_embd)).astype(np.float32)  # ggml [n_embd, rank]
        lora_b = np.zeros((n_embd, rank), np.float32) if zero else rng.normal(0.0, std, (n_embd, rank)).astype(
            np.float32)  # ggml [rank, n_embd]
        writer.add_tensor(f"blk.{i}.attn_q.weight.lora_a", lora_a)
        writer.add_tensor(f"blk.{i}.attn_q.weight.lora_b", lora_b)
    _finish(writer)
    return path


def _finish(writer: gguf.GGUFWriter) -> None:
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
