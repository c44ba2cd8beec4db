"""Herd rides out a Redis restart: while Redis is down a request gets a prompt 503 in its
dialect's shape; once Redis is back (empty: no persistence), the workers register again, claim
jobs, hear cancellations, and answers flow, without restarting anything."""

from __future__ import annotations

import time
from pathlib import Path

import httpx

from herd.processes import EmbeddedRedis
from tests.stack import HeldStream, Stack
from tests.test_scheduling import ps, wait_for


def _generate(stack: Stack, timeout: float = 60) -> httpx.Response:
    body = {"model": "smollm2:135m", "prompt": "Hi", "stream": False, "options": {"num_predict": 2}}
    return httpx.post(stack.base_url + "/api/generate", json=body, timeout=timeout)


def test_a_redis_restart_is_ridden_out(tmp_path: Path) -> None:
    redis = EmbeddedRedis().start()
    stack = Stack(tmp_path, redis.url, num_parallel=1).start()
    try:
        assert _generate(stack).status_code == 200
        redis.stop()

        started = time.monotonic()
        down = _generate(stack)
        assert down.status_code == 503 and down.headers["Retry-After"] == "1"
        assert "Redis" in down.json()["error"] and time.monotonic() - started < 10
        openai_down = httpx.post(stack.base_url + "/v1/completions", timeout=30,
                                 json={"model": "smollm2:135m", "prompt": "x", "max_tokens": 2})
        assert openai_down.status_code == 503 and openai_down.json()["error"]["type"]

        redis = EmbeddedRedis(port=redis.port).start()
        after = _generate(stack, timeout=30)  # stale pooled connections are retried on new ones
        assert after.status_code == 200, after.text
        wait_for(lambda: [m["name"] for m in ps(stack)] == ["smollm2:135m"], 10, "the worker to register again")
        # Cancellations are heard again: a stream holding the only slot, abandoned, frees it.
        holder = HeldStream(stack.base_url)
        holder.close()
        assert _generate(stack, timeout=20).status_code == 200
    finally:
        stack.stop()
        redis.stop()
