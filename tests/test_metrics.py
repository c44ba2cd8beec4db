"""`GET /metrics` on a real gateway: its counters move by what its requests did, and the queue
and worker figures are what Redis holds at scrape time."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from herd.processes import EmbeddedRedis
from tests.stack import ENDLESS, Stack, running_stack

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


@pytest.fixture(scope="module")
def herd2(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A gateway and a worker with two slots per model."""
    with running_stack(tmp_path_factory.mktemp("metrics"), num_parallel=2) as stack:
        yield stack


@pytest.fixture
def no_workers(tmp_path: Path) -> Iterator[Stack]:
    """A gateway alone: every job waits (nobody claims it) until HERD_QUEUE_TIMEOUT drops it,
    and one waiting job fills the queue."""
    with running_stack(tmp_path, workers=0, max_queue=1, queue_timeout="6s") as stack:
        yield stack


def scrape(base_url: str) -> Samples:
    response = httpx.get(base_url + "/metrics", timeout=10)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(response.text) for s in family.samples}


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def moved(before: Samples, after: Samples, name: str, **labels: str) -> float:
    return value(after, name, **labels) - value(before, name, **labels)


def scrape_until(base_url: str, ready: dict[str, float], model: str, timeout: float = 60) -> Samples:
    """Scrape until each named worker/queue gauge has the wanted value."""
    deadline = time.monotonic() + timeout
    while True:
        samples = scrape(base_url)
        current = {name: sum(v for (n, labels), v in samples.items()
                             if n == name and dict(labels).get("model", model) == model) for name in ready}
        if current == ready:
            return samples
        if time.monotonic() > deadline:
            raise AssertionError(f"gauges never reached {ready}: {current}")
        time.sleep(0.2)


def test_request_token_and_job_counters_move_by_what_was_asked(herd2: Stack, model_name: str) -> None:
    before = scrape(herd2.base_url)
    answers = [httpx.post(herd2.base_url + "/api/generate", timeout=300, json={
        "model": model_name, "prompt": f"Say {word}.", "stream": False, "options": {"num_predict": 3}}).json()
        for word in ("yes", "no")]
    with httpx.stream("POST", herd2.base_url + "/v1/chat/completions", timeout=300, json={
            "model": model_name, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4,
            "stream": True, "stream_options": {"include_usage": True}}) as streamed:
        events = [json.loads(line[6:]) for line in streamed.iter_lines() if line.startswith("data: {")]
    usage = events[-1]["usage"]
    missing = httpx.post(herd2.base_url + "/api/generate", json={"model": "no-such-model", "prompt": "Hi"})
    assert missing.status_code == 404
    after = scrape(herd2.base_url)

    generate = {"route": "/api/generate", "dialect": "ollama", "method": "POST"}
    assert moved(before, after, "herd_http_requests_total", **generate, status="200") == 2
    assert moved(before, after, "herd_http_requests_total", **generate, status="404") == 1
    assert moved(before, after, "herd_http_requests_total", route="/v1/chat/completions", dialect="openai",
                 method="POST", status="200") == 1
    assert moved(before, after, "herd_http_requests_total", route="/metrics", dialect="other", method="GET",
                 status="200") == 1  # the first scrape, counted once it was answered
    assert moved(before, after, "herd_http_request_duration_seconds_count", route="/api/generate",
                 dialect="ollama") == 3
    assert moved(before, after, "herd_http_requests_in_progress", dialect="ollama") == 0

    assert moved(before, after, "herd_jobs_admitted_total") == 3
    assert moved(before, after, "herd_time_to_first_token_seconds_count", model=model_name) == 3
    assert moved(before, after, "herd_generated_tokens_total", model=model_name) == \
        sum(a["eval_count"] for a in answers) + usage["completion_tokens"]
    assert moved(before, after, "herd_prompt_tokens_total", model=model_name) == \
        sum(a["prompt_eval_count"] for a in answers) + usage["prompt_tokens"]
    # "Say no." finds the template's head and "Say" in the cells "Say yes." left.
    cached = moved(before, after, "herd_prompt_cached_tokens_total", model=model_name)
    assert usage["prompt_tokens_details"]["cached_tokens"] < cached < \
        moved(before, after, "herd_prompt_tokens_total", model=model_name)
    assert moved(before, after, "herd_jobs_rejected_total", reason="queue_full") == 0


def test_worker_gauges_come_from_the_heartbeats(herd2: Stack, model_name: str) -> None:
    body = {"model": model_name, **ENDLESS}
    with httpx.Client(timeout=300) as http, http.stream("POST", herd2.base_url + "/api/generate", json=body) as a:
        lines = a.iter_lines()  # kept: a dropped iterator is closed, and httpx drops the connection
        assert json.loads(next(lines))["done"] is False  # one of the two slots is busy
        samples = scrape_until(herd2.base_url, {"herd_worker_busy_sequences": 1}, model_name)
    assert value(samples, "herd_redis_up") == 1
    assert value(samples, "herd_workers") == 1
    (worker, host), = [(dict(k)["worker"], dict(k)["host"]) for (n, k), _ in samples.items()
                       if n == "herd_worker_loaded_models"]
    assert value(samples, "herd_worker_loaded_models", worker=worker, host=host) == 1
    assert value(samples, "herd_worker_max_loaded_models", worker=worker, host=host) == 3
    assert value(samples, "herd_worker_parallel_slots", worker=worker, host=host, model=model_name) == 2
    # The client left: the slot frees, and the next heartbeat says so.
    scrape_until(herd2.base_url, {"herd_worker_busy_sequences": 0}, model_name)


def test_queue_depth_and_rejections(no_workers: Stack, model_name: str) -> None:
    url = no_workers.base_url
    before = scrape(url)
    assert value(before, "herd_queue_max") == 1
    assert value(before, "herd_workers") == 0
    body = {"model": model_name, "prompt": "Hi", "stream": False}
    waited: list[httpx.Response] = []
    b = threading.Thread(target=lambda: waited.append(httpx.post(url + "/api/generate", json=body, timeout=120)))
    b.start()
    scrape_until(url, {"herd_queue_waiting": 1}, model_name)
    full = httpx.post(url + "/api/generate", json=body, timeout=60)  # one waiting job fills the queue
    assert full.status_code == 503 and "Retry-After" in full.headers
    b.join()
    assert waited[0].status_code == 503 and "HERD_QUEUE_TIMEOUT" in waited[0].text
    after = scrape(url)
    assert moved(before, after, "herd_jobs_admitted_total") == 1  # the refused one never was
    assert moved(before, after, "herd_jobs_rejected_total", reason="queue_full") == 1
    assert moved(before, after, "herd_jobs_rejected_total", reason="queue_timeout") == 1
    assert moved(before, after, "herd_http_requests_total", route="/api/generate", dialect="ollama",
                 method="POST", status="503") == 2
    assert moved(before, after, "herd_time_to_first_token_seconds_count", model=model_name) == 0
    assert value(after, "herd_queue_waiting") == 0


def test_metrics_without_redis_still_answer(tmp_path: Path) -> None:
    redis = EmbeddedRedis().start()
    gateway = Stack(tmp_path, redis.url, workers=0)
    try:
        gateway.start()
        assert value(scrape(gateway.base_url), "herd_redis_up") == 1
        redis.stop()
        samples = scrape(gateway.base_url)
        assert value(samples, "herd_redis_up") == 0
        assert not any(name.startswith("herd_queue") for name, _ in samples)
        assert value(samples, "herd_http_requests_total", route="/metrics", dialect="other", method="GET",
                     status="200") == 1
    finally:
        gateway.stop()
        redis.stop()
