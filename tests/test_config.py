"""Settings: HERD_ first, then OLLAMA_, then the default; and the docs table matches."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from herd.config import Config, parse_host, settings_table
from herd.durations import DurationError, parse_duration


def test_defaults() -> None:
    config = Config.from_env({})
    assert (config.host, config.port) == ("127.0.0.1", 11434)
    assert config.num_parallel == 4 and config.max_queue == 512
    assert config.keep_alive == 300
    assert config.redis_url is None
    assert config.models == Path("~/.herd/models").expanduser()


def test_herd_wins_over_ollama_which_wins_over_default() -> None:
    config = Config.from_env({"OLLAMA_NUM_PARALLEL": "2", "OLLAMA_KEEP_ALIVE": "1h"})
    assert config.num_parallel == 2 and config.keep_alive == 3600
    config = Config.from_env({"OLLAMA_NUM_PARALLEL": "2", "HERD_NUM_PARALLEL": "8"})
    assert config.num_parallel == 8


def test_bad_integer_falls_back_to_the_default() -> None:
    assert Config.from_env({"HERD_MAX_QUEUE": "lots"}).max_queue == 512


@pytest.mark.parametrize(("text", "expected"), [
    ("0.0.0.0", ("0.0.0.0", 11434)), (":8080", ("127.0.0.1", 8080)), ("http://example:1234", ("example", 1234)),
    ("https://example", ("example", 443)), ("[::1]:9999", ("::1", 9999)),
])
def test_host_parsing(text: str, expected: tuple[str, int]) -> None:
    assert parse_host(text) == expected


@pytest.mark.parametrize(("value", "seconds"), [
    ("5m", 300), ("1h30m", 5400), ("250ms", 0.25), (10, 10), ("10", 10), (0, 0), ("0", 0),
    (-1, math.inf), ("-1m", math.inf), ("1.5h", 5400),
])
def test_durations(value: str | int, seconds: float) -> None:
    assert parse_duration(value) == pytest.approx(seconds)


@pytest.mark.parametrize("value", ["soon", "5 minutes", "m", "", "1d"])
def test_bad_durations(value: str) -> None:
    with pytest.raises(DurationError):
        parse_duration(value)


def test_docs_table_is_the_settings_table() -> None:
    docs = (Path(__file__).parent.parent / "docs" / "configuration.md").read_text()
    assert settings_table() in docs
