"""Sequences' cells kept in host memory after their sequence went to another request.

A worker has NUM_PARALLEL sequences per model; a team has more conversations than that. When a
request takes a sequence whose cells hold another conversation, those cells are copied out
here first (llama.cpp's sequence state: 53 MB and 34 ms for 2 300 tokens of a 135M model),
and a later request that starts with the same tokens copies them back (6 ms) instead of
decoding its history again (10.7 s for the same 2 300 tokens on 2 cores). llama.cpp's server
does the same with `--cache-ram`.

The store only holds bytes and token lists; the engine does the copying, on its own thread.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from worker.token_prefix import common_prefix

MIN_TOKENS = 64  # fewer cells than this are cheaper to decode again than to keep


@dataclass(frozen=True)
class SavedPrompt:
    tokens: list[int]  # what the cells hold, token i in cell i
    state: Any  # llama.cpp's sequence state (a ctypes byte array)
    size: int


class SavedPrompts:
    """Saved sequence states, least recently used dropped first past `budget_bytes`."""

    def __init__(self, budget_bytes: int) -> None:
        self.budget_bytes = budget_bytes
        self._entries: OrderedDict[int, SavedPrompt] = OrderedDict()
        self._next_key = 0
        self.bytes = 0

    def __len__(self) -> int:
        return len(self._entries)

    def worth_sizing(self, tokens: list[int]) -> bool:
        """Whether cells holding `tokens` could be kept at all: asked before llama.cpp is asked
        their state's size, which walks the cells."""
        return len(tokens) >= MIN_TOKENS and self.budget_bytes > 0

    def wants(self, tokens: list[int], size: int) -> bool:
        """Whether cells holding `tokens` (`size` bytes of state) are worth keeping."""
        return self.worth_sizing(tokens) and 0 < size <= self.budget_bytes

    def best(self, tokens: list[int]) -> tuple[int, int]:
        """(key, shared leading tokens) of the saved prompt sharing most with `tokens`; (-1, 0) if none."""
        found, longest = -1, 0
        for key, saved in self._entries.items():
            shared = common_prefix(saved.tokens, tokens)
            if shared > longest:
                found, longest = key, shared
        return found, longest

    def take(self, key: int) -> SavedPrompt:
        """Remove and return a saved prompt (its cells go back into a sequence)."""
        saved = self._entries.pop(key)
        self.bytes -= saved.size
        return saved

    def put(self, tokens: list[int], state: Any, size: int) -> None:
        """Keep a state; saved prompts it extends (an earlier turn of the same chat) are dropped."""
        for key in [k for k, s in self._entries.items() if common_prefix(s.tokens, tokens) == len(s.tokens)]:
            self.take(key)
        self._entries[self._next_key] = SavedPrompt(tokens, state, size)
        self._next_key += 1
        self.bytes += size
        while self.bytes > self.budget_bytes:
            _, oldest = self._entries.popitem(last=False)
            self.bytes -= oldest.size

    def clear(self) -> None:
        self._entries.clear()
        self.bytes = 0
