"""Prompt prefixes as hashes, so a conversation's next turn can go to the worker that still
holds its earlier turns' cells (llama.cpp decodes only what follows the longest kept prefix).

A prompt is hashed at byte lengths 256, 320, 400, ... (each 1.25x the last): a later prompt that
starts with an earlier one's text matches it at the longest such length both reach, which is at
least 80% of the earlier prompt. Byte lengths, not tokens: the gateway has no tokenizer to spare
per request, and equal text means equal tokens for the part that matters.
"""

from __future__ import annotations

import hashlib

MIN_BYTES = 256  # shorter prompts decode in a step or two: not worth a lookup
RATIO = 1.25
MAX_HASHES = 48  # 256 B x 1.25^47 is ~9 GB: no real prompt reaches the end of the ladder

LENGTHS: tuple[int, ...] = tuple(int(MIN_BYTES * RATIO**i) for i in range(MAX_HASHES))


def prefix_hashes(prompt: str) -> list[str]:
    """Hashes of the prompt's first LENGTHS[i] bytes for every length it reaches, longest first."""
    data = prompt.encode()
    running = hashlib.blake2b(digest_size=12, person=b"herd-prefix-v1")
    hashes: list[str] = []
    done = 0
    for length in LENGTHS:
        if length > len(data):
            break
        running.update(data[done:length])
        done = length
        hashes.append(running.copy().hexdigest())
    hashes.reverse()
    return hashes
