"""Conversations longer than the context, cut as Ollama cuts them: whole old messages dropped.

Ollama's chatPrompt (server/prompt.go) keeps the last message whatever its length, and before
it as many of the newest messages as fit `num_ctx` tokens; system messages among those dropped
are kept at the top. Only a prompt that still does not fit is cut token-wise by the runner (the
worker here). Cutting tokens alone would drop the system prompt and split a message in the
middle, which is what long chats from a web UI would get.

Counting needs the model's own tokenizer: llama.cpp loads it without the tensors (0.1 s, a few
MB, once per weights file). A gateway host without llama-cpp-python skips this step, and the
worker's token truncation applies alone (documented).
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import logging
import threading
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

from herd.protocol import Job

if TYPE_CHECKING:
    from gateway.catalog import ResolvedModel

log = logging.getLogger(__name__)

_TOKENIZERS_KEPT = 8


class TokenCounter:
    """Counts a prompt's tokens as the worker will (BOS added, special tokens parsed)."""

    def __init__(self, capacity: int = _TOKENIZERS_KEPT) -> None:
        self._capacity = capacity
        self._loaded: collections.OrderedDict[str, Any] = collections.OrderedDict()  # path -> LoadedWeights
        self._lock = threading.Lock()  # loading, the LRU, and llama.cpp's tokenizer: one caller at a time

    @staticmethod
    def available() -> bool:
        try:
            import worker.llama_model  # noqa: F401  (llama-cpp-python is optional on a gateway host)
        except ImportError:
            return False
        return True

    async def count(self, weights_path: str, text: str) -> int:
        return await asyncio.to_thread(self._count, weights_path, text)

    def _count(self, weights_path: str, text: str) -> int:
        with self._lock:
            return len(self._tokenizer(weights_path).tokenize(text))

    def _tokenizer(self, path: str) -> Any:
        from worker.llama_model import LoadedWeights

        weights = self._loaded.get(path)
        if weights is None:
            weights = LoadedWeights(path, vocab_only=True)
            self._loaded[path] = weights
            if len(self._loaded) > self._capacity:
                _, oldest = self._loaded.popitem(last=False)
                oldest.free()
        self._loaded.move_to_end(path)
        return weights

    def close(self) -> None:
        with self._lock:
            for weights in self._loaded.values():
                weights.free()
            self._loaded.clear()


@dataclasses.dataclass(frozen=True)
class PromptFit:
    """How many tokens a job's prompt may have, and how to count them."""

    limit: int
    weights_path: str
    counter: TokenCounter

    async def count(self, text: str) -> int:
        return await self.counter.count(self.weights_path, text)


class ConversationFitter:
    """The gateway's part in fitting chats: the context a worker gives each sequence
    (`CONTEXT_LENGTH`, less when the job asks for a smaller `num_ctx`), and the counter."""

    def __init__(self, context_length: int, counter: TokenCounter | None) -> None:
        self.context_length = context_length
        self.counter = counter

    def for_job(self, model: ResolvedModel, job: Job) -> PromptFit | None:
        """None when the job must not be cut (`truncate: false`: too long is an error) or
        when this host cannot count tokens. The limit is what the worker gives the sequence:
        `CONTEXT_LENGTH`, at most the model's training context, less for a smaller `num_ctx`."""
        if self.counter is None or not job.truncate:
            return None
        per_sequence = min(self.context_length, model.gguf.context_length or self.context_length)
        num_ctx = job.options.num_ctx
        limit = min(num_ctx, per_sequence) if num_ctx > 0 else per_sequence
        return PromptFit(limit, str(model.record.weights_path), self.counter)


def surely_fits(prompt: str, limit: int) -> bool:
    """True without tokenizing when no tokenization of `prompt` can exceed `limit`: every token
    but the added BOS/EOS spans at least one byte."""
    return len(prompt) * 4 + 2 <= limit or len(prompt.encode()) + 2 <= limit


async def fit_conversation(render: Callable[[int], str], cuts: Sequence[int], limit: int,
                           count: Callable[[str], Awaitable[int]]) -> str:
    """The prompt `render(k)` for the smallest k among `cuts` that fits `limit` tokens, where
    `render(k)` leaves out the conversation's first k messages but for the system ones. `cuts`
    rise from 0 (the whole conversation) to the last message's index, which is kept fitting
    or not."""
    prompt = render(0)
    if len(cuts) <= 1 or surely_fits(prompt, limit) or await count(prompt) <= limit:
        return prompt
    # Fewer messages never make a longer prompt, so search the cut: cuts[low] never fits,
    # cuts[high] fits or is the last message alone.
    low, high = 0, len(cuts) - 1
    best = render(cuts[high])
    while high - low > 1:
        middle = (low + high) // 2
        candidate = render(cuts[middle])
        if surely_fits(candidate, limit) or await count(candidate) <= limit:
            high, best = middle, candidate
        else:
            low = middle
    log.debug("conversation cut to fit %d tokens: its first %d messages dropped", limit, cuts[high])
    return best
