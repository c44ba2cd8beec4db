"""A llama.cpp sampler chain per sequence, built from Ollama-style `SamplingOptions`.

Every sequence owns its chain, so its penalty history and its RNG never see another
sequence's tokens: a sequence decodes the same way alone or in a full batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from herd.protocol import SamplingOptions
from worker.llama_model import lib


def penalties_active(options: SamplingOptions) -> bool:
    return options.repeat_last_n != 0 and (
        options.repeat_penalty != 1.0 or options.frequency_penalty != 0.0 or options.presence_penalty != 0.0
    )


def chain_seed(seed: int) -> int:
    # Any negative seed asks for a random one: llama.cpp draws one for LLAMA_DEFAULT_SEED.
    return int(lib.LLAMA_DEFAULT_SEED) if seed < 0 else seed & 0xFFFFFFFF


class SequenceSampler:
    """Owns one `llama_sampler_chain`; `free()` releases it (idempotent)."""

    __slots__ = ("_last_n", "chain", "has_penalties", "stages")

    def __init__(self, options: SamplingOptions, n_vocab: int, n_ctx: int) -> None:
        params = lib.llama_sampler_chain_default_params()
        params.no_perf = True
        self.chain: Any = lib.llama_sampler_chain_init(params)
        if not self.chain:
            raise MemoryError("llama_sampler_chain_init failed")
        self.stages: list[str] = []
        self.has_penalties = penalties_active(options)
        self._last_n = n_ctx if options.repeat_last_n < 0 else options.repeat_last_n  # -1: the context
        greedy = options.temperature <= 0
        # top_k first: the penalties sampler scans its whole input, and the full vocabulary
        # is slow. Greedy without penalties takes the arg max anyway: no truncation needed.
        if options.top_k > 0 and (self.has_penalties or not greedy):
            self._add("top_k", lib.llama_sampler_init_top_k(options.top_k))
        if self.has_penalties:
            self._add(
                "penalties",
                lib.llama_sampler_init_penalties(
                    n_vocab,
                    self._last_n,
                    options.repeat_penalty,
                    options.frequency_penalty,
                    options.presence_penalty,
                ),
            )
        if greedy:
            self._add("greedy", lib.llama_sampler_init_greedy())
            return
        if options.typical_p < 1.0:
            self._add("typical", lib.llama_sampler_init_typical(options.typical_p, 1))
        if options.top_p < 1.0:
            self._add("top_p", lib.llama_sampler_init_top_p(options.top_p, 1))
        if options.min_p > 0.0:
            self._add("min_p", lib.llama_sampler_init_min_p(options.min_p, 1))
        self._add("temp", lib.llama_sampler_init_temp(options.temperature))
        self._add("dist", lib.llama_sampler_init_dist(chain_seed(options.seed)))

    def _add(self, name: str, sampler: Any) -> None:
        if not sampler:
            self.free()
            raise MemoryError(f"llama_sampler_init_{name} failed")
        lib.llama_sampler_chain_add(self.chain, sampler)  # the chain owns it from here
        self.stages.append(name)

    def prime(self, tokens: Sequence[int]) -> None:
        """Let the penalties see the end of the prompt, as llama-server does."""
        if self.has_penalties:
            for token in tokens[-self._last_n :]:
                lib.llama_sampler_accept(self.chain, token)

    def sample(self, ctx: Any, row: int) -> int:
        """Sample (and accept) a token from output row `row` of the last decode."""
        return int(lib.llama_sampler_sample(self.chain, ctx, row))

    def free(self) -> None:
        if self.chain:
            lib.llama_sampler_free(self.chain)
            self.chain = None
