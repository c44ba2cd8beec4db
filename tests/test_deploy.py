"""The shipped nginx config (deploy/nginx/) in a real nginx in front of two gateways that share
one Redis, one worker and one model store: balancing, unbuffered streams both ways, cancel on
disconnect, blob uploads, and a gateway dying."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from tests.nginx import Nginx
from tests.stack import ENDLESS, Stack, gateway_pair


class Deployment:
    def __init__(self, first: Stack, second: Stack, nginx: Nginx) -> None:
        self.gateways = [first, second]
        self.nginx = nginx
        self.url = nginx.base_url


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    """Gateway 1 with the worker (NUM_PARALLEL 1, so a leaked slot blocks the next request) and
    gateway 2 alone, on the same store and Redis, behind nginx."""
    with gateway_pair(tmp_path_factory.mktemp("deploy"), num_parallel=1) as (first, second), \
            Nginx([f"127.0.0.1:{first.port}", f"127.0.0.1:{second.port}"]) as nginx:
        yield Deployment(first, second, nginx)


def _wait_idle(url: str, timeout: float = 120) -> None:
    """Until no loaded model has a busy sequence (what the workers' heartbeats say)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        models = httpx.get(url + "/api/ps", timeout=10).json()["models"]
        if models and all(m["busy"] == 0 for m in models):
            return
        time.sleep(0.2)
    raise AssertionError(f"a sequence stayed busy: {models}")


def _quick(url: str, model: str) -> dict[str, object]:
    body = {"model": model, "prompt": "Hi", "stream": False, "options": {"num_predict": 2}}
    response = httpx.post(url + "/api/generate", json=body, timeout=300)
    assert response.status_code == 200, response.text
    answer: dict[str, object] = response.json()
    return answer


def test_requests_through_nginx_reach_both_gateways(deployment: Deployment, model_name: str) -> None:
    for _ in range(6):
        assert httpx.get(deployment.url + "/api/tags", timeout=10).status_code == 200
    assert _quick(deployment.url, model_name)["done"] is True
    answered_by = {upstream for method, uri, _, upstream in deployment.nginx.access_log()
                   if (method, uri) == ("GET", "/api/tags")}
    assert answered_by == {f"127.0.0.1:{g.port}" for g in deployment.gateways}


def test_ndjson_lines_pass_through_one_by_one_while_generating(deployment: Deployment, model_name: str) -> None:
    body = {"model": model_name, **ENDLESS}
    with httpx.Client(timeout=120) as http, http.stream("POST", deployment.url + "/api/generate", json=body) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("application/x-ndjson")
        raw = r.iter_raw()
        first = next(raw)
        # A buffering proxy hands on whole buffers (4-8 KB, ~50 lines); unbuffered, the client
        # gets what the gateway wrote: line by line.
        assert first.endswith(b"\n") and len(first) < 1024, first
        line = json.loads(first.split(b"\n")[0])
        assert line["done"] is False and line["response"]
        # More lines follow the same way: the generation (4000 tokens) is still running.
        second = next(raw)
        assert len(second) < 1024 and json.loads(second.split(b"\n")[0])["done"] is False
    _wait_idle(deployment.url)


def test_sse_stream_through_nginx_with_the_openai_sdk(deployment: Deployment, model_name: str) -> None:
    client = openai.OpenAI(base_url=deployment.url + "/v1", api_key="unused", max_retries=0,
                           _strict_response_validation=True)
    stream = client.chat.completions.create(
        model=model_name, messages=[{"role": "user", "content": "Write one sentence about the sea."}],
        stream=True, stream_options={"include_usage": True}, temperature=0, max_tokens=12)
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 12
    assert len(chunks) >= 12  # one chunk per token, not one body


def test_client_leaving_through_nginx_cancels_its_job(deployment: Deployment, model_name: str) -> None:
    body = {"model": model_name, **ENDLESS}
    with httpx.Client(timeout=120) as http, http.stream("POST", deployment.url + "/api/generate", json=body) as r:
        lines = r.iter_lines()
        assert all(json.loads(next(lines))["done"] is False for _ in range(3))
    # nginx closed its connection to the gateway, which cancelled the job: the only slot frees
    # (unless cancelled, 4000 tokens would keep it busy) and serves the next request.
    _wait_idle(deployment.url)
    assert _quick(deployment.url, model_name)["done"] is True


def test_blob_upload_streams_through_nginx(deployment: Deployment, model_path: Path, model_name: str) -> None:
    data = model_path.read_bytes() + b"\nnot the demo model any more"  # a blob the store lacks
    digest = "sha256:" + hashlib.sha256(data).hexdigest()

    def chunks() -> Iterator[bytes]:  # chunked transfer encoding, 1 MiB at a time
        for start in range(0, len(data), 1 << 20):
            yield data[start:start + (1 << 20)]

    url = f"{deployment.url}/api/blobs/{digest}"
    assert httpx.head(url, timeout=10).status_code == 404
    assert httpx.post(url, content=chunks(), timeout=300).status_code == 201
    assert httpx.head(url, timeout=10).status_code == 200
    stored = deployment.gateways[0].models / "blobs" / digest.replace(":", "-")
    assert stored.stat().st_size == len(data)

    # What `herd create` does against a remote server: upload the GGUF (Content-Length), then create.
    gguf = "sha256:" + hashlib.sha256(model_path.read_bytes()).hexdigest()
    with model_path.open("rb") as body:
        uploaded = httpx.post(f"{deployment.url}/api/blobs/{gguf}", content=body, timeout=300,
                              headers={"Content-Length": str(model_path.stat().st_size)})
    assert uploaded.status_code == 200  # already in the store, which both gateways share
    created = httpx.post(deployment.url + "/api/create", timeout=300,
                         json={"model": "deployed:latest", "files": {"model.gguf": gguf}})
    assert created.status_code == 200
    assert json.loads(created.text.strip().splitlines()[-1]) == {"status": "success"}
    names = [m["name"] for m in httpx.get(deployment.url + "/api/tags", timeout=10).json()["models"]]
    assert "deployed:latest" in names


def test_metrics_are_not_served_through_the_balancer(deployment: Deployment) -> None:
    assert httpx.get(deployment.url + "/metrics", timeout=10).status_code == 404
    assert httpx.get(deployment.gateways[0].base_url + "/metrics", timeout=10).status_code == 200


def test_service_survives_a_gateway_dying(deployment: Deployment, model_name: str) -> None:
    """Runs last: it kills gateway 2."""
    dead = deployment.gateways[1]
    assert dead.gateway is not None
    dead.gateway.kill()
    dead.gateway.wait()
    seen = len(deployment.nginx.access_log())
    for _ in range(4):  # GETs and POSTs: a refused connection moves on before anything was sent
        assert httpx.get(deployment.url + "/api/tags", timeout=10).status_code == 200
        assert _quick(deployment.url, model_name)["done"] is True
    after = deployment.nginx.access_log()[seen:]
    assert [status for *_, status, _ in after] == [200] * 8
    # nginx tried the dead gateway (its address comes first in `$upstream_addr`, then the
    # live one) until max_fails took it out; every answer came from the live gateway.
    live = f"127.0.0.1:{deployment.gateways[0].port}"
    assert all(upstream.split(", ")[-1] == live for *_, upstream in after)
    assert any(f"127.0.0.1:{dead.port}" in upstream for *_, upstream in after)
