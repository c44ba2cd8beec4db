"""Several requests at once, clients that leave, and a worker that stops mid-stream."""

from __future__ import annotations

import contextlib
import json
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis

from herd import protocol
from tests.stack import ENDLESS, HeldStream, Stack, gateway_pair, running_stack


@pytest.fixture(scope="module")
def one_slot(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """NUM_PARALLEL=1, so a leaked slot would block the next request."""
    with running_stack(tmp_path_factory.mktemp("one-slot"), num_parallel=1) as stack:
        yield stack


def _read_some_then_leave(base_url: str, model: str, lines: int) -> int:
    body = {"model": model, **ENDLESS}
    seen = 0
    with httpx.Client(base_url=base_url, timeout=60) as http, http.stream("POST", "/api/generate", json=body) as r:
        for line in r.iter_lines():
            if line:
                seen += 1
            if seen >= lines:
                break
    return seen


def _quick(base_url: str, model: str, timeout: float) -> dict[str, object]:
    body = {"model": model, "prompt": "Hi", "stream": False, "options": {"num_predict": 3}}
    response = httpx.post(base_url + "/api/generate", json=body, timeout=timeout)
    response.raise_for_status()
    result: dict[str, object] = response.json()
    return result


def test_two_concurrent_requests_both_complete(herd: Stack, model_name: str) -> None:
    results: list[dict[str, object]] = []

    def ask() -> None:
        body = {"model": model_name, "prompt": "Count to ten.", "stream": False,
                "options": {"num_predict": 16, "temperature": 0}}
        results.append(httpx.post(herd.base_url + "/api/generate", json=body, timeout=120).json())

    threads = [threading.Thread(target=ask) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 2
    assert all(r["done"] is True and r["eval_count"] == 16 for r in results)
    assert results[0]["response"] == results[1]["response"]  # same greedy request, same text


def test_disconnect_mid_stream_frees_the_slot(one_slot: Stack, model_name: str) -> None:
    assert _read_some_then_leave(one_slot.base_url, model_name, 3) == 3
    started = time.monotonic()
    assert _quick(one_slot.base_url, model_name, timeout=20)["done"] is True
    assert time.monotonic() - started < 20


def test_disconnect_while_queued_never_runs_the_job(one_slot: Stack, model_name: str) -> None:
    body = {"model": model_name, **ENDLESS}
    with httpx.Client(base_url=one_slot.base_url, timeout=60) as http, \
            http.stream("POST", "/api/generate", json=body) as running:
        assert running.status_code == 200
        # Hold on to the line iterator: a dropped one is closed, and httpx then drops the connection.
        lines = running.iter_lines()
        assert "response" in json.loads(next(lines))  # the only slot is now busy
        with pytest.raises(httpx.ReadTimeout):  # this one waits in the queue, then gives up
            queued = httpx.post(one_slot.base_url + "/api/generate", json=body, timeout=1.0)
            pytest.fail(f"the queued request was answered: {queued.status_code} {queued.text[:500]}")
    # Both clients are gone: the slot must serve a new request at once, not the abandoned one.
    assert _quick(one_slot.base_url, model_name, timeout=20)["done"] is True


def test_non_streamed_request_is_cancelled_when_its_client_leaves(one_slot: Stack, model_name: str) -> None:
    body = {"model": model_name, **ENDLESS, "stream": False}
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(one_slot.base_url + "/api/generate", json=body, timeout=2.0)
    assert _quick(one_slot.base_url, model_name, timeout=20)["done"] is True


def test_worker_stopping_mid_stream_ends_with_an_error_line(tmp_path: Path, model_name: str) -> None:
    """Stopped at once (no drain), a worker's running answer ends with an error line, not a silent end."""
    with running_stack(tmp_path, num_parallel=1, drain_timeout="0") as stack:
        body = {"model": model_name, **ENDLESS}
        with httpx.Client(base_url=stack.base_url, timeout=60) as http, \
                http.stream("POST", "/api/generate", json=body) as response:
            lines = response.iter_lines()
            first = json.loads(next(lines))
            assert first["done"] is False
            stack.workers[0].send_signal(signal.SIGTERM)
            rest = [json.loads(line) for line in lines if line]
        assert rest, "the stream ended without a word"
        assert "error" in rest[-1] and "done" not in rest[-1]


def test_every_events_stream_expires(one_slot: Stack, model_name: str) -> None:
    """Events streams carry a TTL (set once, renewed a minute later, not per token), so the
    streams of clients that never read them do not pile up in Redis."""
    for _ in range(2):
        assert _quick(one_slot.base_url, model_name, timeout=20)["done"] is True
    client = redis.Redis.from_url(one_slot.redis_url)
    keys = list(client.scan_iter(match=protocol.PREFIX + "events:*"))
    assert keys
    ttls = [client.pttl(key) for key in keys]
    assert all(0 < ttl <= protocol.EVENTS_TTL_MS for ttl in ttls), ttls


def _kill_gateway(stack: Stack) -> None:
    assert stack.gateway is not None
    stack.gateway.kill()  # no shutdown: it cancels nothing
    stack.gateway.wait()


def test_a_killed_gateways_running_job_is_dropped(tmp_path: Path, model_name: str) -> None:
    """A gateway killed mid-answer cannot cancel its job: the worker notices its heartbeat is
    gone and frees the sequence (an unlimited answer would otherwise run for ten contexts)."""
    with gateway_pair(tmp_path, num_parallel=1) as (doomed, other):
        stream = HeldStream(doomed.base_url)  # 4 000 tokens: about 40 s here
        _kill_gateway(doomed)
        killed = time.monotonic()
        stream.close()

        def busy() -> int:
            return sum(m["busy"] for m in httpx.get(other.base_url + "/api/ps", timeout=10).json()["models"])

        while not busy():  # the worker's next heartbeat shows the job running
            assert time.monotonic() - killed < 5, "the job never showed as running"
            time.sleep(0.1)
        while busy() and time.monotonic() - killed < 25:
            time.sleep(0.5)
        assert busy() == 0, "the job of the killed gateway still runs"
        assert _quick(other.base_url, model_name, timeout=20)["done"] is True  # the slot serves again


def test_a_killed_gateways_queued_job_is_not_run(tmp_path: Path, model_name: str) -> None:
    """A job still queued when its gateway was killed is dropped when a worker claims it,
    rather than run for nobody ahead of live clients."""
    with gateway_pair(tmp_path, num_parallel=1) as (doomed, other):
        holder = HeldStream(other.base_url)  # the one sequence is busy

        def queue_then_lose_the_gateway() -> None:
            with contextlib.suppress(httpx.HTTPError):  # its gateway is killed under it
                httpx.post(doomed.base_url + "/api/generate", timeout=60,
                           json={"model": model_name, **ENDLESS, "stream": False})

        orphan = threading.Thread(target=queue_then_lose_the_gateway)
        orphan.start()
        waiting = redis.Redis.from_url(doomed.redis_url)
        deadline = time.monotonic() + 10
        while not waiting.zcard(protocol.WAITING_SET):
            assert time.monotonic() < deadline, "the orphan-to-be never queued"
            time.sleep(0.05)
        _kill_gateway(doomed)
        time.sleep(protocol.GATEWAY_TTL_S + 4)  # its heartbeat lapses, then the grace
        holder.close()
        # The holder left: the next job claimed is the orphan, dropped unrun; a live client is served
        # at once (had the orphan started, it would hold the sequence until the running-job check
        # cancelled it, 3 s or more later).
        started = time.monotonic()
        assert _quick(other.base_url, model_name, timeout=20)["done"] is True
        assert time.monotonic() - started < 2.5
        orphan.join(5)
