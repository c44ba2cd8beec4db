"""Which sequence a new prompt takes, so it decodes as little as it can.

A finished request's KV cells stay in its sequence with the list of tokens they hold (token i
in cell i). A new request takes the free sequence holding the longest prefix of its prompt
when that is a tenth of the prompt or more (llama.cpp's server rule), else the least recently
used one; cells past the shared part are dropped. Cells about to be mostly overwritten are
first saved to host memory (`SavedPrompts`), and a saved prompt sharing more than any
sequence is copied back in. Called on the engine's thread only, like the engine itself.

The end of a prompt is always decoded again: its last token's logits give the first answer
token, and a prompt of MIN_CHUNK tokens or more keeps its last MIN_CHUNK to decode, so that
last token goes through the same flash-attention kernel as in a prompt decoded whole (the
tiled one, for 64+ rows). Reusing all but the last token sent it through the per-row kernel,
which rounds differently: a repeated greedy request then answered differently 7 times in 10.
"""

from __future__ import annotations

import ctypes
from typing import Any

from worker.llama_model import lib
from worker.prefill_pacer import MIN_CHUNK
from worker.saved_prompts import SavedPrompts
from worker.token_prefix import common_prefix


def reusable(n_prompt: int) -> int:
    """The most cells a prompt of `n_prompt` tokens may take from earlier requests."""
    return n_prompt - MIN_CHUNK if n_prompt >= MIN_CHUNK else n_prompt - 1


class KeptCells:
    def __init__(self, ctx: Any, mem: Any, n_parallel: int, *, cache_ram_mib: int) -> None:
        self._ctx = ctx
        self._mem = mem
        self._held: list[list[int]] = [[] for _ in range(n_parallel)]  # what each free sequence holds
        self._last_used = [0] * n_parallel
        self._uses = 0
        self._saved = SavedPrompts(cache_ram_mib * 2**20)

    @property
    def saved_bytes(self) -> int:
        return self._saved.bytes

    def take(self, free: list[int], tokens: list[int]) -> tuple[int, int]:
        """One of the `free` sequences for `tokens`, and how many leading tokens its cells now hold."""
        prefixes = {sid: common_prefix(self._held[sid], tokens) for sid in free}
        sid = max(free, key=lambda s: prefixes[s])
        if prefixes[sid] * 10 < len(tokens):
            sid = self._least_recently_used(free)
        shared = prefixes[sid]
        key, saved_shared = self._saved.best(tokens)
        if saved_shared > shared and saved_shared * 10 >= len(tokens):
            sid = self._least_recently_used(free)
            self._save(sid)
            shared = self._restore(sid, key, tokens)
        elif len(self._held[sid]) - shared >= len(self._held[sid]) // 2:  # most of its cells would go
            self._save(sid)
        reused = min(shared, reusable(len(tokens)))
        if not lib.llama_memory_seq_rm(self._mem, sid, reused, -1):  # recurrent models cannot cut
            lib.llama_memory_seq_rm(self._mem, sid, -1, -1)
            reused = 0
        self._held[sid] = []
        return sid, reused

    def keep(self, sid: int, tokens: list[int]) -> None:
        """A sequence's request ended with its cells holding `tokens`, in order."""
        self._held[sid] = tokens
        self._touch(sid)

    def drop(self, sid: int) -> None:
        """A sequence's request ended with cells that do not hold its tokens in order (a shift
        moved them, a failed decode left them unknown): they go."""
        lib.llama_memory_seq_rm(self._mem, sid, -1, -1)
        self._held[sid] = []
        self._touch(sid)

    def clear(self) -> None:
        self._saved.clear()

    def _touch(self, sid: int) -> None:
        self._uses += 1
        self._last_used[sid] = self._uses

    def _least_recently_used(self, free: list[int]) -> int:
        return min(free, key=lambda s: self._last_used[s])

    def _save(self, sid: int) -> None:
        """Copy a free sequence's cells to host memory, if there are enough to be worth it."""
        tokens = self._held[sid]
        if not self._saved.worth_sizing(tokens):
            return
        size = lib.llama_state_seq_get_size(self._ctx, sid)
        if not self._saved.wants(tokens, size):
            return
        state = (ctypes.c_ubyte * size)()
        if lib.llama_state_seq_get_data(self._ctx, state, size, sid) == size:
            self._saved.put(tokens, state, size)

    def _restore(self, sid: int, key: int, tokens: list[int]) -> int:
        """Put a saved prompt's cells into a free sequence; the prefix of `tokens` they now hold."""
        saved = self._saved.take(key)
        lib.llama_memory_seq_rm(self._mem, sid, -1, -1)
        if lib.llama_state_seq_set_data(self._ctx, saved.state, saved.size, sid) != saved.size:
            lib.llama_memory_seq_rm(self._mem, sid, -1, -1)
            self._held[sid] = []
            return 0
        self._held[sid] = saved.tokens
        return common_prefix(saved.tokens, tokens)
