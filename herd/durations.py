"""Durations as Ollama accepts them: Go `time.ParseDuration` strings or plain seconds.

`keep_alive` and `OLLAMA_KEEP_ALIVE` use this format: "5m", "1h30m", "250ms", "-1",
a JSON number of seconds. A negative value means forever; we return `math.inf` for it.
"""

from __future__ import annotations

import math
import re

_UNIT_SECONDS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "μs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}
_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")
_GO_DURATION = re.compile(r"^[+-]?(?:(?:\d+(?:\.\d*)?|\.\d+)(?:ns|us|µs|μs|ms|s|m|h))+$")


class DurationError(ValueError):
    """A duration string that neither Go nor Ollama would accept."""


def parse_duration(value: str | float | int) -> float:
    """Seconds for a keep_alive-style value; `math.inf` for a negative one (forever)."""
    if isinstance(value, bool):
        raise DurationError(f"invalid duration {value!r}")
    if isinstance(value, (int, float)):
        if math.isnan(value):
            raise DurationError("invalid duration NaN")
        return math.inf if value < 0 else float(value)
    text = value.strip().strip("\"'")
    if not text:
        raise DurationError("invalid duration \"\"")
    try:
        return parse_duration(float(text))
    except ValueError:
        pass
    if text == "0":
        return 0.0
    if not _GO_DURATION.match(text):
        raise DurationError(f'time: invalid duration "{text}"')
    negative = text.startswith("-")
    seconds = sum(float(number) * _UNIT_SECONDS[unit] for number, unit in _PART.findall(text))
    return math.inf if negative and seconds > 0 else seconds


def format_duration(seconds: float) -> str:
    """The short human form used by `herd ps` ("4 minutes from now" style is the CLI's job)."""
    if math.isinf(seconds):
        return "forever"
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:g}s"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    out = f"{hours}h" if hours else ""
    out += f"{minutes}m" if minutes else ""
    out += f"{secs}s" if secs else ""
    return out
