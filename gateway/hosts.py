"""Ollama's guard against DNS rebinding (CVE-2024-28224): while the gateway listens on a
loopback address, a request whose `Host` is not a local name or a private address gets 403, so
a web page on an attacker's domain that resolves to 127.0.0.1 cannot reach the API. A gateway
bound to another address (behind nginx, on the intranet) takes every Host.
"""

from __future__ import annotations

import ipaddress
import socket
from typing import Any

from gateway.asgi import ASGIApp, respond

_LOCAL_SUFFIXES = (".localhost", ".local", ".internal")


def _host_name(header: str) -> str:
    """The name or address in a Host header, without its port or IPv6 brackets."""
    header = header.strip().lower()
    if header.startswith("["):
        return header[1:].partition("]")[0]
    if header.count(":") == 1:
        return header.partition(":")[0]
    return header


def host_allowed(header: str) -> bool:
    """Whether a request with this Host may reach a gateway that listens on loopback."""
    host = _host_name(header)
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return (host in ("", "localhost", socket.gethostname().lower())
                or host.endswith(_LOCAL_SUFFIXES))
    return address.is_loopback or address.is_private or address.is_unspecified


def listens_on_loopback(bind_host: str) -> bool:
    if bind_host == "localhost":
        return True
    try:
        return ipaddress.ip_address(bind_host).is_loopback
    except ValueError:
        return False


def guard_hosts(app: ASGIApp, bind_host: str) -> ASGIApp:
    """`app`, behind the Host check when `bind_host` is a loopback address."""
    if not listens_on_loopback(bind_host):
        return app

    async def guarded(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            host = next((value.decode("latin-1") for name, value in scope["headers"] if name == b"host"), "")
            if not host_allowed(host):
                await respond(send, 403)
                return
        await app(scope, receive, send)

    return guarded
