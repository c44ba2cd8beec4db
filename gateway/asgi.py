"""The plain-ASGI layer that wraps the whole Litestar app (host guard, API keys): below
Litestar's own types, so typed loosely, with the one way it answers a request itself."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

ASGIApp = Callable[..., Awaitable[None]]


async def respond(send: Any, status: int, body: bytes = b"", headers: list[tuple[bytes, bytes]] | None = None) -> None:
    """A whole response, sent before the app sees the request."""
    await send({"type": "http.response.start", "status": status,
                "headers": [*(headers or []), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
