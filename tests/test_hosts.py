"""The DNS-rebinding guard (Ollama's allowedHostsMiddleware): on a loopback bind, only local
Host names and private addresses get through; other binds take every Host."""

from __future__ import annotations

import socket
from typing import Any

import httpx
import pytest

from gateway.hosts import guard_hosts, host_allowed, listens_on_loopback
from tests.stack import Stack

ALLOWED = ["localhost", "localhost:11434", "127.0.0.1:11434", "[::1]:11434", "10.1.2.3", "192.168.0.7:80",
           "0.0.0.0", "gpu-box.local", "herd.internal:8080", "app.localhost", socket.gethostname(), ""]
REFUSED = ["evil.example", "evil.example:11434", "8.8.8.8", "[2001:4860::8888]:11434", "localhost.evil.example",
           "internal", "127.0.0.1.evil.example"]


@pytest.mark.parametrize("host", ALLOWED)
def test_local_hosts_are_allowed(host: str) -> None:
    assert host_allowed(host)


@pytest.mark.parametrize("host", REFUSED)
def test_other_hosts_are_refused(host: str) -> None:
    assert not host_allowed(host)


def test_only_a_loopback_bind_is_guarded() -> None:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        return None

    assert listens_on_loopback("127.0.0.1") and listens_on_loopback("::1") and listens_on_loopback("localhost")
    assert guard_hosts(app, "0.0.0.0") is app and guard_hosts(app, "10.0.0.5") is app
    assert guard_hosts(app, "127.0.0.1") is not app


def test_a_rebound_host_gets_403_on_every_route(herd: Stack, model_name: str) -> None:
    for method, path in [("GET", "/"), ("GET", "/api/tags"), ("POST", "/api/generate"), ("GET", "/v1/models"),
                         ("GET", "/metrics"), ("GET", "/no/such/route")]:
        answer = httpx.request(method, herd.base_url + path, headers={"Host": "evil.example"}, timeout=10,
                               json={"model": model_name, "prompt": "Hi"} if method == "POST" else None)
        assert answer.status_code == 403, path
    assert httpx.get(herd.base_url + "/api/tags", headers={"Host": "localhost:11434"}, timeout=10).status_code == 200
