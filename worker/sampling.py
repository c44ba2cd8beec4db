"""A llama.cpp sampler chain per sequence, built from Ollama-style `SamplingOptions`.

Every sequence owns its chain, so its penalty history and its RNG never see another
sequence's tokens: a sequence decodes the same way alone or in a full batch.

Chain order: logit bias, top_k, penalties, then greedy or typical/top_p/min_p/temp/dist.
A grammar (structured outputs) sits beside the chain, used the way llama.cpp's common
sampler does: sample with the chain, check that one token against the grammar, and only if
the grammar rejects it apply the grammar to the whole vocabulary and sample again. Checking
the whole vocabulary costs 10-20 ms a token on a small CPU; one token costs next to nothing,
and the model mostly wants a token the grammar allows. A token the grammar rejects is never
handed to it (llama.cpp aborts the process on one): the sequence fails instead.
"""

from __future__ import annotations

import ctypes
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from herd.protocol import SamplingOptions
from worker.llama_model import lib

_TOKEN_DATA = np.dtype([("id", "<i4"), ("logit", "<f4"), ("p", "<f4")])  # llama_token_data


def penalties_active(options: SamplingOptions) -> bool:
    return options.repeat_last_n != 0 and (
        options.repeat_penalty != 1.0 or options.frequency_penalty != 0.0 or options.presence_penalty != 0.0
    )


def chain_seed(seed: int) -> int:
    # Any negative seed asks for a random one: llama.cpp draws one for LLAMA_DEFAULT_SEED.
    return int(lib.LLAMA_DEFAULT_SEED) if seed < 0 else seed & 0xFFFFFFFF


class GrammarRejected(ValueError):
    """llama.cpp could not parse the grammar text (its log says where)."""


class GrammarDeadEnd(RuntimeError):
    """No token the grammar allows was left to sample (only possible with odd grammars)."""


class _Candidates:
    """A `llama_token_data_array` over the whole vocabulary, refilled from a logits row, and
    a one-token array for checking a single token against the grammar."""

    __slots__ = ("_array", "_data", "_ids", "_one", "_one_array", "_view", "n_vocab")

    def __init__(self, n_vocab: int) -> None:
        self.n_vocab = n_vocab
        self._data: Any = (lib.llama_token_data * n_vocab)()
        self._view: Any = np.frombuffer(self._data, dtype=_TOKEN_DATA)
        self._ids = np.arange(n_vocab, dtype=np.int32)
        self._array: Any = lib.llama_token_data_array()
        self._one: Any = lib.llama_token_data()
        self._one_array: Any = lib.llama_token_data_array()

    def fill(self, ctx: Any, row: int) -> Any:
        """The array (by reference) holding row `row` of the last decode's logits."""
        logits = np.ctypeslib.as_array(lib.llama_get_logits_ith(ctx, row), shape=(self.n_vocab,))
        view = self._view
        view["id"] = self._ids  # samplers sort the array in place: the ids move
        view["logit"] = logits
        view["p"] = 0.0
        array = self._array
        array.data = ctypes.cast(self._data, lib.llama_token_data_p)
        array.size = self.n_vocab
        array.selected = -1
        array.sorted = False
        return ctypes.byref(array)

    def selected(self) -> tuple[int, float]:
        """The token the chain picked and its logit after every stage."""
        array = self._array
        chosen = array.data[array.selected]
        return int(chosen.id), float(chosen.logit)

    def allows(self, grammar: Any, token: int) -> bool:
        one, array = self._one, self._one_array
        one.id, one.logit, one.p = token, 1.0, 0.0
        array.data = ctypes.pointer(one)
        array.size, array.selected, array.sorted = 1, -1, False
        lib.llama_sampler_apply(grammar, ctypes.byref(array))
        return not math.isinf(array.data[0].logit)


class SequenceSampler:
    """Owns one `llama_sampler_chain` and maybe a grammar sampler; `free()` releases them
    (idempotent). `grammar` is GBNF text with a `root` rule and needs `vocab`; `logit_bias`
    maps token ids, all below `n_vocab`, to what is added to their logits."""

    __slots__ = ("_candidates", "_last_n", "chain", "grammar", "has_penalties", "stages")

    def __init__(self, options: SamplingOptions, n_vocab: int, n_ctx: int, *, vocab: Any = None,
                 grammar: str | None = None, logit_bias: Mapping[int, float] | None = None) -> None:
        self.grammar: Any = None
        self._candidates: _Candidates | None = None
        params = lib.llama_sampler_chain_default_params()
        params.no_perf = True
        self.chain: Any = lib.llama_sampler_chain_init(params)
        if not self.chain:
            raise MemoryError("llama_sampler_chain_init failed")
        self.stages: list[str] = []
        self.has_penalties = penalties_active(options)
        self._last_n = n_ctx if options.repeat_last_n < 0 else options.repeat_last_n  # -1: the context
        greedy = options.temperature <= 0
        if grammar is not None:
            if vocab is None:
                self.free()
                raise ValueError("a grammar needs the vocabulary")
            self.grammar = lib.llama_sampler_init_grammar(vocab, grammar.encode(), b"root")
            if not self.grammar:  # a parse error: the text is at fault, not memory
                self.free()
                raise GrammarRejected("llama.cpp could not parse the grammar")
            self._candidates = _Candidates(n_vocab)
        if logit_bias:
            biases = (lib.llama_logit_bias * len(logit_bias))(*logit_bias.items())
            self._add("logit_bias", lib.llama_sampler_init_logit_bias(n_vocab, len(logit_bias), biases))
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
        """Let the penalties see the end of the prompt, as llama-server does (only them: the
        grammar constrains what is generated, never the prompt)."""
        if self.has_penalties:
            penalties = lib.llama_sampler_chain_get(self.chain, self.stages.index("penalties"))
            for token in tokens[-self._last_n :]:
                lib.llama_sampler_accept(penalties, token)

    def sample(self, ctx: Any, row: int) -> int:
        """Sample (and accept) a token from output row `row` of the last decode."""
        if self.grammar is None:
            return int(lib.llama_sampler_sample(self.chain, ctx, row))
        candidates = self._candidates
        assert candidates is not None
        lib.llama_sampler_apply(self.chain, candidates.fill(ctx, row))
        token, _ = candidates.selected()
        if not candidates.allows(self.grammar, token):
            # Again, with everything the grammar rejects taken out first.
            cur = candidates.fill(ctx, row)
            lib.llama_sampler_apply(self.grammar, cur)
            lib.llama_sampler_apply(self.chain, cur)
            token, logit = candidates.selected()
            if math.isinf(logit) or not candidates.allows(self.grammar, token):
                raise GrammarDeadEnd("no token the output format allows is left to sample")
        lib.llama_sampler_accept(self.grammar, token)
        lib.llama_sampler_accept(self.chain, token)
        return token

    def free(self) -> None:
        if self.chain:
            lib.llama_sampler_free(self.chain)
            self.chain = None
        if self.grammar:
            lib.llama_sampler_free(self.grammar)
            self.grammar = None
