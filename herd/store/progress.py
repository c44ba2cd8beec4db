"""What `/api/create` reports while it works: Ollama's ProgressResponse."""

from __future__ import annotations

from collections.abc import Callable

import msgspec


class Progress(msgspec.Struct, omit_defaults=True):
    """One progress line; `digest`, `total` and `completed` make clients draw a bar."""

    status: str
    digest: str = ""
    total: int = 0
    completed: int = 0


ProgressFn = Callable[[Progress], None]


def ignore(_: Progress) -> None:
    pass
