"""The in-process baselines: the model driven straight through llama-cpp-python's low-level
C API, with no server, no queue and no Herd code in the way.

One `RawModel` holds the weights and one context shaped like a Herd engine's (`n_seq_max`
sequences, a split KV cache of `ctx_per_seq` cells each, the same batch size and threads),
so a ratio against it isolates what the serving path costs. Sampling is greedy through
llama.cpp's own greedy sampler, as Herd does for `temperature: 0`.
"""

from __future__ import annotations

import ctypes
import time
from dataclasses import dataclass
from typing import Any

import llama_cpp.llama_cpp as _llama

from worker.llama_model import extra_buffer_types_safe

# The bindings' pointer types exist only for type checkers: treat the module as untyped.
lib: Any = _llama


def _silent(_level: int, _text: bytes | None, _user_data: Any) -> None:
    return None


# Referenced at module level: C keeps calling it for as long as the process lives.
_quiet_log = lib.llama_log_callback(_silent)


@dataclass(frozen=True)
class StreamRun:
    """One single-sequence generation."""

    tokens: list[int]  # generated, end-of-generation excluded
    prefill_ns: int  # tokenized prompt in, first token sampled
    first_to_last_ns: int  # first sampled token to the last one

    @property
    def decode_tok_s(self) -> float:
        """Tokens per second between the first and the last token (n - 1 intervals)."""
        return (len(self.tokens) - 1) / (self.first_to_last_ns / 1e9)


@dataclass(frozen=True)
class BatchRun:
    """B sequences generated together: prompts prefilled in one decode, then one token each
    per decode."""

    generated: int
    elapsed_s: float

    @property
    def tok_s(self) -> float:
        return self.generated / self.elapsed_s


class RawModel:
    def __init__(self, path: str, *, n_seq: int, ctx_per_seq: int, n_threads: int, n_batch: int = 512) -> None:
        lib.llama_log_set(_quiet_log, ctypes.c_void_p(0))
        lib.llama_backend_init()
        params = lib.llama_model_default_params()
        params.use_extra_bufts = extra_buffer_types_safe()  # as Herd's worker loads models
        self.model: Any = lib.llama_model_load_from_file(path.encode(), params)
        if not self.model:
            raise RuntimeError(f"llama.cpp could not load {path}")
        self.vocab: Any = lib.llama_model_get_vocab(self.model)
        train = int(lib.llama_model_n_ctx_train(self.model))
        self.ctx_per_seq = min(ctx_per_seq, train) if train > 0 else ctx_per_seq
        self.n_seq = n_seq
        self.n_batch = max(n_batch, n_seq)
        cparams = lib.llama_context_default_params()
        cparams.n_ctx = self.ctx_per_seq * n_seq
        cparams.n_batch = self.n_batch
        cparams.n_ubatch = self.n_batch
        cparams.n_seq_max = n_seq
        cparams.kv_unified = False
        cparams.n_threads = n_threads
        cparams.n_threads_batch = n_threads
        cparams.no_perf = True
        cparams.flash_attn_type = lib.LLAMA_FLASH_ATTN_TYPE_AUTO  # Herd's default
        self.ctx: Any = lib.llama_init_from_model(self.model, cparams)
        if not self.ctx:
            raise RuntimeError("llama.cpp could not create a context")
        self.mem: Any = lib.llama_get_memory(self.ctx)
        self.batch: Any = lib.llama_batch_init(self.n_batch, 0, 1)
        self.greedy: Any = lib.llama_sampler_init_greedy()  # stateless: shared by all sequences

    def tokenize(self, text: str) -> list[int]:
        data = text.encode()
        buf = (lib.llama_token * (len(data) + 8))()
        n = lib.llama_tokenize(self.vocab, data, len(data), buf, len(buf), True, True)
        if n < 0:
            raise ValueError("prompt too long for the token buffer")
        return list(buf[:n])

    def is_eog(self, token: int) -> bool:
        return bool(lib.llama_vocab_is_eog(self.vocab, token))

    # -- one batch ----------------------------------------------------------------------------

    def _set_batch(self, entries: list[tuple[int, int, int, bool]]) -> None:
        """entries: (token, position, sequence id, wants logits)."""
        b = self.batch
        for i, (token, pos, seq, logits) in enumerate(entries):
            b.token[i] = token
            b.pos[i] = pos
            b.n_seq_id[i] = 1
            b.seq_id[i][0] = seq
            b.logits[i] = logits
        b.n_tokens = len(entries)

    def _decode(self, entries: list[tuple[int, int, int, bool]]) -> None:
        self._set_batch(entries)
        ret = lib.llama_decode(self.ctx, self.batch)
        if ret != 0:
            raise RuntimeError(f"llama_decode returned {ret}")

    def _sample(self, row: int) -> int:
        return int(lib.llama_sampler_sample(self.greedy, self.ctx, row))

    def _prefill(self, prompts: list[list[int]]) -> list[int]:
        """Decode every prompt (sequence i gets prompts[i]) in one batch; sample each."""
        entries: list[tuple[int, int, int, bool]] = []
        rows: list[int] = []
        for seq, prompt in enumerate(prompts):
            entries += [(t, p, seq, p == len(prompt) - 1) for p, t in enumerate(prompt)]
            rows.append(len(entries) - 1)
        self._decode(entries)
        return [self._sample(row) for row in rows]

    def clear(self) -> None:
        """Forget every sequence. Metadata only, as Herd's engine does between requests:
        wiping the buffers too would memset the whole KV cache (hundreds of MB) each time."""
        lib.llama_memory_clear(self.mem, False)

    # -- the measurements ---------------------------------------------------------------------

    def stream(self, prompt: list[int], n_predict: int) -> StreamRun:
        """One sequence: prefill, then one token per llama_decode, stopping at n_predict or
        end of generation (as a server would)."""
        self.clear()
        start = time.perf_counter_ns()
        token = self._prefill([prompt])[0]
        t_first = time.perf_counter_ns()
        t_last = t_first
        tokens: list[int] = []
        pos = len(prompt)
        while not self.is_eog(token):
            tokens.append(token)
            t_last = time.perf_counter_ns()
            if len(tokens) == n_predict:
                break
            self._decode([(token, pos, 0, True)])
            pos += 1
            token = self._sample(0)
        return StreamRun(tokens, t_first - start, t_last - t_first)

    def first_token_ns(self, text: str) -> int:
        """Tokenize, prefill and sample the first token: the model's share of a time to
        first token."""
        self.clear()
        start = time.perf_counter_ns()
        self._prefill([self.tokenize(text)])
        return time.perf_counter_ns() - start

    def batched(self, prompt: list[int], n_seqs: int, n_predict: int) -> BatchRun:
        """n_seqs copies of the prompt, prefilled together, then n_predict tokens each with one
        llama_decode per step. A sequence that reaches end of generation drops out."""
        if n_seqs > self.n_seq:
            raise ValueError(f"the context holds {self.n_seq} sequences")
        self.clear()
        start = time.perf_counter_ns()
        nexts = self._prefill([prompt] * n_seqs)
        pos = len(prompt)
        live = [(seq, tok) for seq, tok in enumerate(nexts) if not self.is_eog(tok)]
        generated = len(live)
        for _ in range(n_predict - 1):
            if not live:
                break
            self._decode([(tok, pos, seq, True) for seq, tok in live])
            pos += 1
            sampled = [(seq, self._sample(row)) for row, (seq, _) in enumerate(live)]
            live = [(seq, tok) for seq, tok in sampled if not self.is_eog(tok)]
            generated += len(live)
        return BatchRun(generated, (time.perf_counter_ns() - start) / 1e9)

    def prefill_jobs(self, text: str, n_seqs: int, duration_s: float) -> float:
        """Jobs per second for 'tokenize, prefill, sample one token', n_seqs jobs per
        llama_decode, repeated for about duration_s."""
        jobs = 0
        start = time.perf_counter()
        while time.perf_counter() - start < duration_s:
            self.clear()
            self._prefill([self.tokenize(text) for _ in range(n_seqs)])
            jobs += n_seqs
        return jobs / (time.perf_counter() - start)

    def close(self) -> None:
        lib.llama_sampler_free(self.greedy)
        lib.llama_batch_free(self.batch)
        lib.llama_free(self.ctx)
        lib.llama_model_free(self.model)
