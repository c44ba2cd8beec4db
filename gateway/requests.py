"""Request checks shared by both dialects."""

from __future__ import annotations

import re
from typing import Any

from gateway.errors import ApiError, bad_request
from herd.durations import DurationError, parse_duration


def keep_alive_seconds(value: str | float | int | None) -> float | None:
    """A request's keep_alive in seconds (inf: forever), None when it did not say."""
    if value is None:
        return None
    try:
        return parse_duration(value)
    except DurationError as exc:
        raise bad_request(f"invalid keep_alive: {exc}", param="keep_alive") from exc


def reject_unsupported(**fields: Any) -> None:
    """A 400 naming the first field that is set but that Herd cannot honour yet.

    Empty values (`"tools": []`, `"format": ""`) are what clients send by default: fine.
    """
    for name, value in fields.items():
        if value not in (None, False, "", [], {}):
            raise bad_request(f"'{name}' is not supported by this server yet", param=name)


def lacks_capability(model: str, capability: str, param: str) -> ApiError:
    """Ollama's 400 for a request the model cannot serve: `"NAME" does not support insert`.
    Herd loads no image projectors and no model declares thinking, so `vision` and `thinking`
    are always missing; `insert` comes from the template (see ResolvedModel.capabilities)."""
    return bad_request(f'"{model}" does not support {capability}', param=param)


_TOKEN_ID = re.compile(r"-?[0-9]{1,12}")
LOGIT_BIAS_LIMIT = 100.0  # OpenAI's range: -100 bans a token, +100 all but forces it


def logit_bias(raw: dict[str, float] | None, vocab_size: int | None) -> dict[int, float] | None:
    """OpenAI's `logit_bias` (token id as a string → bias) as token ids, or a 400. Ids are
    checked against the vocabulary when the GGUF says its size (the worker checks anyway)."""
    if not raw:
        return None
    out: dict[int, float] = {}
    for key, bias in raw.items():
        if not _TOKEN_ID.fullmatch(key):
            raise bad_request(f"invalid key in 'logit_bias': {key!r} is not a token id", param="logit_bias")
        token = int(key)
        if token < 0 or (vocab_size is not None and token >= vocab_size):
            limit = f" (the vocabulary has {vocab_size} tokens)" if vocab_size is not None else ""
            raise bad_request(f"invalid key in 'logit_bias': token id {token} is out of range{limit}",
                              param="logit_bias")
        if not -LOGIT_BIAS_LIMIT <= bias <= LOGIT_BIAS_LIMIT:
            raise bad_request(f"invalid value in 'logit_bias' for {key}: {bias} is not between -100 and 100",
                              param="logit_bias")
        out[token] = float(bias)
    return out
