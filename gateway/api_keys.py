"""API keys (`HERD_API_KEYS`): what Ollama lacks for a shared intranet server.

With keys set, every request but `GET`/`HEAD /` (the liveness answer load balancers and Ollama's
clients probe) and CORS preflights (browsers never send credentials on those) must carry exactly
one `Authorization: Bearer <key>` header naming one of them; everything else, including
`/metrics` and unknown routes, gets 401 in the dialect's error shape. Keys are compared in
constant time; a key in the query string does not count.
"""

from __future__ import annotations

import hmac
from typing import Any

from gateway.asgi import ASGIApp, respond
from gateway.errors import error_body, is_openai_path

_PUBLIC = {("GET", "/"), ("HEAD", "/")}


def presented_key(headers: list[tuple[bytes, bytes]]) -> str | None:
    """The key of the one `Authorization: Bearer <key>` header (scheme in any case), else None."""
    values = [value for name, value in headers if name == b"authorization"]
    if len(values) != 1:
        return None
    scheme, _, key = values[0].decode("latin-1").partition(" ")
    return key if scheme.lower() == "bearer" and key else None


def key_accepted(key: str | None, keys: tuple[str, ...]) -> bool:
    if key is None:
        return False
    given = key.encode()
    found = False
    for known in keys:  # every key is compared, so the time says nothing about which matched
        found |= hmac.compare_digest(given, known.encode())
    return found


def require_api_keys(app: ASGIApp, keys: tuple[str, ...]) -> ASGIApp:
    """`app`, asking for one of `keys` on every request (see the module's note); `app` itself
    when no keys are configured."""
    if not keys:
        return app

    async def guarded(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            method, path = scope["method"], scope["path"]
            preflight = method == "OPTIONS" and any(name == b"access-control-request-method"
                                                    for name, _ in scope["headers"])
            if (method, path) not in _PUBLIC and not preflight and \
                    not key_accepted(presented_key(scope["headers"]), keys):
                await _unauthorized(path, send)
                return
        await app(scope, receive, send)

    return guarded


async def _unauthorized(path: str, send: Any) -> None:
    if is_openai_path(path):
        message = "Incorrect API key provided: send it as 'Authorization: Bearer <key>'"
    else:
        message = "unauthorized: send 'Authorization: Bearer <key>' (HERD_API_KEY for the herd CLI)"
    await respond(send, 401, error_body(path, 401, message), [
        (b"content-type", b"application/json"), (b"www-authenticate", b'Bearer realm="herd"')])
