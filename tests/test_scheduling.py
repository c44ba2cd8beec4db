"""Scheduling across real workers: batching, MAX_QUEUE, queue timeout, keep_alive, eviction,
load stampedes, replicas and dead workers."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from herd.cpus import usable_cores
from herd.demo import demo_gguf
from tests.stack import HeldStream, Stack, running_stack


@pytest.fixture(scope="module")
def herd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """This module's own stack (overriding the shared one): /api/ps must show only what these
    tests loaded, not the models other test modules left loaded in the shared stack."""
    with running_stack(tmp_path_factory.mktemp("scheduling"), num_parallel=4) as stack:
        yield stack


def generate(stack: Stack, prompt: str = "Hi", *, timeout: float = 120, **options: Any) -> httpx.Response:
    body = {"model": "smollm2:135m", "prompt": prompt, "stream": False, "options": options}
    return httpx.post(stack.base_url + "/api/generate", json=body, timeout=timeout)


def ps(stack: Stack) -> list[dict[str, Any]]:
    models: list[dict[str, Any]] = httpx.get(stack.base_url + "/api/ps", timeout=10).json()["models"]
    return models


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def in_parallel(*calls: Callable[[], Any]) -> list[Any]:
    results: list[Any] = [None] * len(calls)

    def run(index: int, call: Callable[[], Any]) -> None:
        results[index] = call()

    threads = [threading.Thread(target=run, args=(i, c)) for i, c in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def variant_gguf(directory: Path) -> Path:
    """The demo GGUF with a different `general.name` of the same length: other weights digest."""
    data = demo_gguf().read_bytes()
    old = b"Smollm2 135M 8k Lc100K Mix1 Ep2"
    assert data.count(old) == 1
    path = directory / "variant.gguf"
    path.write_bytes(data.replace(old, b"Variant 135M 8k Lc100K Mix1 Ep2"))
    return path


def test_parallel_requests_overlap_in_one_batch(herd: Stack) -> None:
    """Four requests decode together in one context: the worker reports all four running at
    once (speed itself is measured in bench/, not asserted here)."""
    alone = generate(herd, "Count to one hundred.", num_predict=48, temperature=0)
    busiest = 0
    done = threading.Event()

    def watch() -> None:
        nonlocal busiest
        while not done.is_set():
            busiest = max([busiest, *[m["busy"] for m in ps(herd)]])
            time.sleep(0.05)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        four = in_parallel(*[lambda: generate(herd, "Count to one hundred.", num_predict=48, temperature=0)] * 4)
    finally:
        done.set()
        watcher.join()
    assert all(r.json()["eval_count"] == 48 for r in four)
    assert busiest == 4, f"at most {busiest} of 4 requests ran at once"
    assert {r.json()["response"] for r in four} == {alone.json()["response"]}


def test_same_seed_same_text_alone_or_batched(herd: Stack) -> None:
    sampled = {"num_predict": 24, "temperature": 0.9, "seed": 1234}
    alone = generate(herd, "Invent a name for a cat.", **sampled).json()["response"]
    others = [lambda p=p: generate(herd, p, num_predict=40, temperature=1.0) for p in ("Say a", "Say b", "Say c")]
    batched = in_parallel(lambda: generate(herd, "Invent a name for a cat.", **sampled), *others)
    assert batched[0].json()["response"] == alone


def test_ps_lists_loaded_models_and_stop_unloads(herd: Stack) -> None:
    generate(herd, num_predict=1)
    [model] = ps(herd)
    assert model["name"] == "smollm2:135m"
    assert model["size"] > 90_000_000 and model["context_length"] == 4096
    assert model["expires_at"].endswith("Z") and model["details"]["format"] == "gguf"
    assert "smollm2:135m" in herd.herd("ps").stdout
    herd.herd("stop", "smollm2:135m")
    wait_for(lambda: ps(herd) == [], 10, "the model to unload")
    assert generate(herd, num_predict=2).json()["done"] is True  # and it loads again on demand


def test_keep_alive_zero_unloads_after_the_request(herd: Stack) -> None:
    assert generate(herd, num_predict=2).status_code == 200
    body = {"model": "smollm2:135m", "prompt": "Hi", "stream": False, "keep_alive": 0, "options": {"num_predict": 2}}
    assert httpx.post(herd.base_url + "/api/generate", json=body, timeout=60).json()["done"] is True
    wait_for(lambda: ps(herd) == [], 10, "keep_alive 0 to unload the model")


def test_empty_prompt_with_keep_alive_zero_answers_unload(herd: Stack) -> None:
    body = {"model": "smollm2:135m", "keep_alive": 0}
    reply = httpx.post(herd.base_url + "/api/generate", json=body, timeout=60).json()
    assert reply["done"] is True and reply["done_reason"] == "unload"


def test_requests_differing_in_num_ctx_share_one_loaded_model(herd: Stack) -> None:
    """num_ctx caps each sequence inside the loaded context: never a reload (ollama#8903)."""
    assert generate(herd, num_predict=1).status_code == 200
    [before] = ps(herd)
    for num_ctx in (256, 2048, 8192, 1024):
        reply = generate(herd, num_predict=2, num_ctx=num_ctx).json()
        assert reply["done"] is True and reply["load_duration"] == 0, f"num_ctx {num_ctx} reloaded the model"
    [after] = ps(herd)
    assert after["context_length"] == before["context_length"] and after["digest"] == before["digest"]


@pytest.fixture(scope="module")
def tight(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """One slot, two waiting places, a short queue timeout."""
    with running_stack(tmp_path_factory.mktemp("tight"), num_parallel=1, max_queue=2, queue_timeout="4s") as stack:
        yield stack


def test_full_queue_is_a_503_with_retry_after_at_once(tight: Stack) -> None:
    holder = HeldStream(tight.base_url)
    try:
        waiters = [threading.Thread(target=generate, args=(tight,), kwargs={"timeout": 30, "num_predict": 2})
                   for _ in range(2)]
        for waiter in waiters:
            waiter.start()
        wait_for(lambda: _waiting(tight) == 2, 10, "two jobs to wait")
        started = time.monotonic()
        refused = generate(tight, num_predict=2)
        assert time.monotonic() - started < 1.0
        assert refused.status_code == 503 and refused.headers["Retry-After"]
        assert "maximum pending requests exceeded" in refused.json()["error"]
        openai_refused = httpx.post(tight.base_url + "/v1/completions", timeout=10,
                                    json={"model": "smollm2:135m", "prompt": "x", "max_tokens": 2})
        assert openai_refused.status_code == 503 and openai_refused.json()["error"]["message"]
    finally:
        holder.close()
    for waiter in waiters:
        waiter.join()


def _waiting(stack: Stack) -> int:
    import redis

    return int(redis.Redis.from_url(stack.redis_url).zcard("herd:waiting"))


def test_queue_timeout_drops_the_job(tight: Stack) -> None:
    holder = HeldStream(tight.base_url)
    try:
        started = time.monotonic()
        late = generate(tight, num_predict=2)
        assert 3.5 < time.monotonic() - started < 15
        assert late.status_code == 503 and "HERD_QUEUE_TIMEOUT" in late.json()["error"]
        assert _waiting(tight) == 0
    finally:
        holder.close()
    # The dropped job never runs: once the holder's slot is free, the next request is served.
    wait_for(lambda: all(m["busy"] == 0 for m in ps(tight)), 30, "the slot to be freed")
    assert generate(tight, num_predict=2, timeout=20).json()["done"] is True


def test_eviction_under_max_loaded_models_one(tmp_path: Path) -> None:
    with running_stack(tmp_path, max_loaded_models=1) as stack:
        modelfile = tmp_path / "Modelfile"
        modelfile.write_text(f"FROM {variant_gguf(tmp_path)}\n")
        stack.herd("create", "variant:1", "-f", str(modelfile))
        assert generate(stack, num_predict=2).status_code == 200
        assert [m["name"] for m in ps(stack)] == ["smollm2:135m"]
        body = {"model": "variant:1", "prompt": "Hi", "stream": False, "options": {"num_predict": 2}}
        assert httpx.post(stack.base_url + "/api/generate", json=body, timeout=60).json()["done"] is True
        assert [m["name"] for m in ps(stack)] == ["variant:1"]


def test_load_stampede_makes_one_load(tmp_path: Path) -> None:
    with running_stack(tmp_path, workers=2, num_parallel=2) as stack:
        time.sleep(1.5)  # both workers are up and reading
        results = in_parallel(*[lambda: generate(stack, num_predict=2, timeout=60)] * 12)
        assert all(r.status_code == 200 for r in results)
        logs = stack.logs("worker0") + stack.logs("worker1")
        assert logs.count("loaded smollm2:135m") - logs.count("as a replica") == 1


def test_dead_worker_leaves_ps_and_its_jobs_move(tmp_path: Path) -> None:
    with running_stack(tmp_path, workers=2, num_parallel=1) as stack:
        time.sleep(1.5)
        generate(stack, num_predict=1)
        [model] = ps(stack)
        [holder_id] = model["workers"]
        holder = next(w for w in stack.workers if f"-{w.pid}-" in holder_id)
        # The holder is streaming one answer and has one more job queued when it dies.
        stream = HeldStream(stack.base_url)
        queued: list[httpx.Response] = []
        waiter = threading.Thread(target=lambda: queued.append(generate(stack, "Say yes.", num_predict=4)))
        waiter.start()
        wait_for(lambda: _waiting(stack) == 1, 10, "the second job to queue")
        os.kill(holder.pid, signal.SIGKILL)
        rest = [json.loads(line) for line in stream.lines if line]
        stream.close()
        assert "error" in rest[-1]  # text was already shown: an error, never a duplicate
        waiter.join(60)
        assert queued and queued[0].status_code == 200 and queued[0].json()["done"] is True
        [model] = ps(stack)
        assert holder_id not in model["workers"] and model["replicas"] == 1


def test_deep_queue_gets_a_replica(tmp_path: Path) -> None:
    with running_stack(tmp_path, workers=2, num_parallel=1) as stack:
        generate(stack, num_predict=1)
        assert ps(stack)[0]["replicas"] == 1
        # Enough work to keep the queue deep for the janitor's rounds (about 10 s on one slot).
        results = in_parallel(*[lambda: generate(stack, "Write a poem.", num_predict=100, timeout=180)] * 8)
        assert all(r.status_code == 200 for r in results)
        assert ps(stack)[0]["replicas"] == 2


def test_a_loaded_model_keeps_streaming_while_another_loads(tmp_path: Path) -> None:
    """A load runs beside the decoding of the models already loaded (ollama#5724 stalls them)."""
    with running_stack(tmp_path, max_loaded_models=2) as stack:
        modelfile = tmp_path / "Modelfile"
        modelfile.write_text(f"FROM {variant_gguf(tmp_path)}\n")
        stack.herd("create", "variant:1", "-f", str(modelfile))
        stream = HeldStream(stack.base_url)
        arrivals: list[float] = []

        def read_until_closed() -> None:
            with contextlib.suppress(httpx.HTTPError, httpx.StreamError):  # closed below, mid-read
                for _ in stream.lines:
                    arrivals.append(time.monotonic())

        reading = threading.Thread(target=read_until_closed)
        reading.start()
        try:
            asked = time.monotonic()
            body = {"model": "variant:1", "stream": False}  # an empty prompt: load, then answer "load"
            loaded = httpx.post(stack.base_url + "/api/generate", json=body, timeout=120).json()
            answered = time.monotonic()
        finally:
            stream.close()
            reading.join(10)
        assert loaded["done_reason"] == "load" and loaded["load_duration"] > 0
        during = [t for t in arrivals if asked <= t <= answered]
        assert len(during) >= 3, (f"{len(during)} tokens of the loaded model streamed during a "
                                  f"{loaded['load_duration'] / 1e9:.2f} s load of another")


CROWDED = "decode threads on"


def _worker_logs(stack: Stack) -> str:
    return stack.logs("worker0") + stack.logs("worker1")


def test_workers_crowding_one_machine_say_so(tmp_path: Path) -> None:
    with running_stack(tmp_path / "crowded", workers=2, num_thread=usable_cores()) as stack:
        wait_for(lambda: CROWDED in _worker_logs(stack), 20, "a warning that the workers share the cores")


def test_workers_sharing_the_cores_do_not_warn(tmp_path: Path) -> None:
    each = max(1, usable_cores() // 2)
    with running_stack(tmp_path / "shared", workers=2, num_thread=each) as stack:
        time.sleep(6)  # past the first check (third heartbeat)
        assert (CROWDED in _worker_logs(stack)) == (2 * each > usable_cores())


def test_a_stopping_worker_finishes_its_answers_and_takes_no_new_jobs(tmp_path: Path) -> None:
    with running_stack(tmp_path, num_parallel=2, drain_timeout="30s") as stack:
        stream = HeldStream(stack.base_url, num_predict=200)
        stopping = stack.workers[0]
        try:
            stopping.send_signal(signal.SIGTERM)
            later: list[httpx.Response] = []
            waiter = threading.Thread(target=lambda: later.append(generate(stack, num_predict=2, timeout=120)))
            waiter.start()
            rest = [json.loads(line) for line in stream.lines]
        finally:
            stream.close()
        assert rest[-1]["done"] is True and rest[-1]["done_reason"] == "length", rest[-1]
        assert rest[-1]["eval_count"] == 200
        assert stopping.wait(30) == 0
        assert waiter.is_alive()  # the stopping worker did not take it, free sequence or not
        stack.add_worker()  # a worker that starts now loads the model and answers it
        waiter.join(120)
        assert later and later[0].status_code == 200 and later[0].json()["done"] is True


def test_a_stopping_worker_gives_up_on_answers_after_the_drain_timeout(tmp_path: Path) -> None:
    with running_stack(tmp_path, drain_timeout="1s") as stack:
        stream = HeldStream(stack.base_url)
        try:
            started = time.monotonic()
            stack.workers[0].send_signal(signal.SIGTERM)
            last = json.loads(list(stream.lines)[-1])
        finally:
            stream.close()
        assert "error" in last and 0.8 < time.monotonic() - started < 10
        assert stack.workers[0].wait(10) == 0
