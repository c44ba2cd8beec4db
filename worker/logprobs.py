"""Log probabilities of sampled tokens, read from the model's logits row.

They are the model's own distribution: a log-softmax of the raw logits, before logit bias,
grammar, penalties, temperature and truncation, which is what OpenAI reports. So under a
grammar or a bias the sampled token need not be the most likely one listed. Only computed
for sequences that asked: one pass over the vocabulary (about 50k floats) per token.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from herd.protocol import TokenLogprob, TopLogprob
from worker.llama_model import lib

MAX_TOP = 20  # OpenAI's and Ollama's limit on alternatives per token


def logprob_entry(ctx: Any, row: int, n_vocab: int, token: int, top_n: int,
                  piece: Callable[[int], bytes]) -> TokenLogprob:
    """The log probability of `token` at output row `row` of the last decode, with the
    `top_n` most likely tokens (ties: lower id first, as the greedy sampler picks)."""
    logits = np.ctypeslib.as_array(lib.llama_get_logits_ith(ctx, row), shape=(n_vocab,))
    peak = float(logits.max())
    log_total = peak + float(np.log(np.exp(logits - peak, dtype=np.float64).sum()))
    top: list[TopLogprob] = []
    if top_n > 0:
        k = min(top_n, MAX_TOP, n_vocab)
        best = np.argpartition(logits, n_vocab - k)[n_vocab - k:]
        for i in sorted(best.tolist(), key=lambda t: (-float(logits[t]), t)):
            top.append(TopLogprob(piece=piece(i), logprob=float(logits[i]) - log_total))
    return TokenLogprob(piece=piece(token), logprob=float(logits[token]) - log_total, top=top)
