"""Who a request comes from, for HERD_MAX_JOBS_PER_CLIENT: its API key when keys are required,
else its address. Only a hash goes to Redis, so neither a key nor an address is stored there."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

from gateway.api_keys import presented_key
from gateway.asgi import ASGIApp

_SCOPE_KEY = "herd.client"


def client_id(scope: dict[str, Any], *, by_api_key: bool) -> str:
    """A stable id for the request's client (hex, fit for a Redis key name).

    With keys required, the key the guard accepted names the client, whatever address it comes
    from. Without keys a presented bearer token proves nothing (the openai SDK always sends one,
    any text), so the address does: as uvicorn gives it, which behind a proxy is the forwarded
    one only when the proxy is among `HERD_TRUSTED_PROXIES`.
    """
    if by_api_key:
        who = "key\0" + (presented_key(scope["headers"]) or "")
    else:
        client = scope.get("client")
        who = "addr\0" + (client[0] if client else "")
    return hashlib.sha256(who.encode()).hexdigest()[:32]


def name_clients(app: ASGIApp, *, limited: bool, by_api_key: bool) -> ASGIApp:
    """`app`, with each HTTP request's client id in its scope when jobs per client are `limited`
    (`app` itself otherwise). Wrapped inside the API-key guard, so a key it sees was accepted."""
    if not limited:
        return app

    async def named(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            scope[_SCOPE_KEY] = client_id(scope, by_api_key=by_api_key)
        await app(scope, receive, send)

    return named


def client_of(scope: Mapping[str, object]) -> str | None:
    """The id `name_clients` gave the request; None when jobs per client are not limited."""
    value = scope.get(_SCOPE_KEY)
    return value if isinstance(value, str) else None
