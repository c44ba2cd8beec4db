"""Token log probabilities from the worker (`Token.logprobs`) in each dialect's shape.

The worker sends one entry per generated token (end-of-generation excluded) with the text
its token released, so entries and text stay aligned chunk by chunk: joining the entries'
tokens gives the text, except where a token holds part of a multi-byte character (its
`token` shows U+FFFD; its `bytes` are exact) or where a stop string cut a token short.
"""

from __future__ import annotations

from gateway import wire_openai
from herd.protocol import TokenLogprob

MAX_TOP_LOGPROBS = 20  # OpenAI's and Ollama's limit


def token_text(piece: bytes) -> str:
    # As Ollama's JSON encoder writes a token's bytes: invalid UTF-8 becomes U+FFFD.
    return piece.decode("utf-8", errors="replace")


def chat_logprobs(entries: list[TokenLogprob]) -> wire_openai.ChoiceLogprobs:
    """/v1/chat/completions: `choices[].logprobs.content[]`."""
    return wire_openai.ChoiceLogprobs(content=[
        wire_openai.ChatTokenLogprob(
            token=token_text(e.piece), logprob=e.logprob, bytes=list(e.piece),
            top_logprobs=[wire_openai.TopLogprob(token=token_text(t.piece), logprob=t.logprob, bytes=list(t.piece))
                          for t in e.top],
        )
        for e in entries
    ])


def completion_logprobs(entries: list[TokenLogprob], text_offset: int) -> wire_openai.CompletionLogprobs:
    """/v1/completions' legacy shape; `text_offset` is where the first token begins, counted
    from the start of the prompt as OpenAI does (streamed chunks carry on from the last)."""
    tokens = [token_text(e.piece) for e in entries]
    offsets: list[int] = []
    for token in tokens:
        offsets.append(text_offset)
        text_offset += len(token)
    return wire_openai.CompletionLogprobs(
        tokens=tokens,
        token_logprobs=[e.logprob for e in entries],
        top_logprobs=[{token_text(t.piece): t.logprob for t in e.top} for e in entries],
        text_offset=offsets,
    )
