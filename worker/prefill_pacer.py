"""How many prompt tokens one decode step may carry while other sequences are generating.

A step's batch holds one token per generating sequence plus prompt chunks of new requests,
and every generating stream waits for the whole step. Filling the batch with a long prompt
(llama.cpp's server takes `n_batch` prompt tokens a step) stalls every running stream for
seconds on a CPU: here 2 300 prompt tokens of a 135M Q4_1 model froze a stream for 2.1 s at a
time. So while sequences generate, a step gets only as many prompt tokens as take about
`slice_ms`, learnt from the steps themselves; with nothing generating, a prompt takes the whole
batch, the fastest way to its first token.
"""

from __future__ import annotations

import math

# A prompt's chunk in a step beside generating sequences gets at least this many tokens. With a
# split KV cache llama.cpp cuts such a step into micro-batches: the generating tokens with one
# token of each prompt, then the rest of each chunk; ggml's CPU flash attention has a tiled
# kernel only for 64 or more query rows, and its per-row kernel is slow deep in a context: a
# 2 300-token prompt fed in 64-token chunks beside one stream took 1.8x as long as unsliced,
# in 65-token chunks 1.08x (docs/performance.md).
MIN_CHUNK = 65
_WEIGHT = 0.3  # of the newest observation in the running averages


def _blend(average: float | None, sample: float) -> float:
    return sample if average is None else average + _WEIGHT * (sample - average)


class PrefillPacer:
    """Learns, from the durations of recent steps, what a step of generating tokens alone
    costs and what each prompt token adds, and sizes prompt chunks to a time slice."""

    def __init__(self, slice_ms: float) -> None:
        self.slice_ms = slice_ms
        self._decode_ms: float | None = None  # a step with generating tokens only
        self._ms_per_prompt_token: float | None = None

    def prompt_budget(self, generating: int, room: int) -> int:
        """Prompt tokens the next step may carry, at most `room` (what the batch has left)."""
        if generating == 0 or not 0 < self.slice_ms < math.inf:  # off: 0 or no bound
            return room
        if self._ms_per_prompt_token is None:
            return min(room, MIN_CHUNK)
        left_ms = self.slice_ms - (self._decode_ms or 0.0)
        return min(room, max(MIN_CHUNK, int(left_ms / self._ms_per_prompt_token)))

    def observe(self, generating: int, prompt_tokens: int, step_ms: float) -> None:
        """Record one step: how many generating and prompt tokens it carried, how long it took."""
        if prompt_tokens == 0:
            if generating:
                self._decode_ms = _blend(self._decode_ms, step_ms)
            return
        base_ms = (self._decode_ms or 0.0) if generating else 0.0
        per_token = max(step_ms - base_ms, step_ms * 0.1) / prompt_tokens
        self._ms_per_prompt_token = _blend(self._ms_per_prompt_token, per_token)
