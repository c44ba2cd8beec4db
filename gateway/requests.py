"""Request checks shared by both dialects."""

from __future__ import annotations

from typing import Any

from gateway.errors import bad_request
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
