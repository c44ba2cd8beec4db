"""HERD_MAX_JOBS_PER_CLIENT on real stacks: a client past its limit gets 429 with Retry-After at
once, in each dialect, through the clients people use; other clients are not held back; a job
counts while queued and while running, and stops counting when it ends however it ends."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator

import httpx
import ollama
import openai
import pytest
import redis

from gateway.clients import client_id
from gateway.jobs import ClientFull, JobQueue, new_job_id
from herd import protocol
from herd.processes import EmbeddedRedis
from herd.protocol import Job
from herd.redis_client import async_client
from tests.nginx import Nginx
from tests.stack import HeldStream, Stack, running_stack

KEYS = ("client-limit-key-a-0123", "client-limit-key-b-4567")
MODEL = "smollm2:135m"


def client_counts(stack: Stack) -> dict[str, int]:
    """Each client set in Redis and how many jobs it counts."""
    db = redis.Redis.from_url(stack.redis_url)
    return {key.decode(): int(db.zcard(key)) for key in db.scan_iter("herd:client:*")}


def wait_for_counts(stack: Stack, expected: list[int], timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while sorted(n for n in client_counts(stack).values() if n) != expected:
        assert time.monotonic() < deadline, f"counts {client_counts(stack)}, expected {expected}"
        time.sleep(0.05)


def generate(stack: Stack, headers: dict[str, str] | None = None, timeout: float = 60) -> httpx.Response:
    body = {"model": MODEL, "prompt": "Hi", "stream": False, "options": {"num_predict": 2}}
    return httpx.post(stack.base_url + "/api/generate", json=body, headers=headers, timeout=timeout)


@pytest.fixture(scope="module")
def by_address(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """No API keys: clients are told apart by address. One slot, so a second job waits."""
    with running_stack(tmp_path_factory.mktemp("by_address"), num_parallel=1, max_jobs_per_client=2) as stack:
        yield stack


@pytest.fixture(scope="module")
def by_key(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """API keys: clients are told apart by key (every test client shares one address)."""
    with running_stack(tmp_path_factory.mktemp("by_key"), num_parallel=3, max_jobs_per_client=2,
                       api_keys=",".join(KEYS)) as stack:
        yield stack


def test_queued_and_running_jobs_count_until_they_end(by_address: Stack) -> None:
    holder = HeldStream(by_address.base_url)  # running
    wait_for_counts(by_address, [1])
    outcome: list[str] = []

    def wait_then_give_up() -> None:
        try:
            outcome.append(str(generate(by_address, timeout=3).status_code))
        except httpx.ReadTimeout:
            outcome.append("gave up")

    waiter = threading.Thread(target=wait_then_give_up)
    waiter.start()  # queued behind the holder, gives up after 3 s
    wait_for_counts(by_address, [2])

    started = time.monotonic()
    refused = generate(by_address)
    assert time.monotonic() - started < 1.0
    assert refused.status_code == 429 and refused.headers["Retry-After"] == "1"
    assert "HERD_MAX_JOBS_PER_CLIENT" in refused.json()["error"]
    openai_refused = httpx.post(by_address.base_url + "/v1/chat/completions", timeout=10,
                                json={"model": MODEL, "messages": [{"role": "user", "content": "Hi"}]})
    assert openai_refused.status_code == 429
    assert openai_refused.json()["error"]["type"] == "rate_limit_exceeded"

    waiter.join()  # the queued job's client left: its place is given back
    assert outcome == ["gave up"]
    wait_for_counts(by_address, [1])
    holder.close()  # the running job's client left
    wait_for_counts(by_address, [])
    answered = generate(by_address)  # and a job that ends with its answer gives its place back too
    assert answered.status_code == 200 and answered.json()["done"] is True
    assert client_counts(by_address) == {}  # the emptied set is gone, not left behind

    metrics = httpx.get(by_address.base_url + "/metrics", timeout=10).text
    assert 'herd_jobs_rejected_total{reason="client_limit"} 2.0' in metrics


def test_each_api_key_has_its_own_limit(by_key: Stack) -> None:
    a, b = ({"Authorization": f"Bearer {key}"} for key in KEYS)
    held = [HeldStream(by_key.base_url, a), HeldStream(by_key.base_url, a)]
    try:
        with pytest.raises(ollama.ResponseError) as refused:
            ollama.Client(host=by_key.base_url, headers=a).generate(model=MODEL, prompt="Hi")
        assert refused.value.status_code == 429 and "HERD_MAX_JOBS_PER_CLIENT" in refused.value.error
        sdk = openai.OpenAI(base_url=by_key.base_url + "/v1", api_key=KEYS[0], max_retries=0,
                            _strict_response_validation=True)
        with pytest.raises(openai.RateLimitError) as limited:
            sdk.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Hi"}], max_tokens=2)
        assert limited.value.response.headers["retry-after"] == "1"

        # The other key, from the same address, is served meanwhile.
        other = ollama.Client(host=by_key.base_url, headers=b).generate(model=MODEL, prompt="Hi",
                                                                          options={"num_predict": 2})
        assert other.done

        # The SDK's own retry (it honours Retry-After) gets in once one of the key's jobs ends.
        threading.Timer(0.3, held.pop().close).start()
        patient = openai.OpenAI(base_url=by_key.base_url + "/v1", api_key=KEYS[0], max_retries=3,
                                _strict_response_validation=True)
        answer = patient.chat.completions.create(model=MODEL, max_tokens=2,
                                                 messages=[{"role": "user", "content": "Hi"}])
        assert answer.choices[0].finish_reason in ("stop", "length")
    finally:
        for stream in held:
            stream.close()
    wait_for_counts(by_key, [])
    stored = redis.Redis.from_url(by_key.redis_url).keys("*")
    assert not any(key.encode() in name or b"127.0.0.1" in name for name in stored for key in KEYS)


def _job() -> Job:
    return Job(id=new_job_id(), model=MODEL, digest="0" * 64, prompt="Hi")


def test_a_job_nobody_vouches_for_stops_counting() -> None:
    """A gateway that died cannot hold its clients' places for ever: past the stale bound an
    entry is dropped, unless the live gateway following the job vouched for it meanwhile."""

    async def scenario(url: str) -> None:
        client = async_client(url)
        queue = JobQueue(client, max_queue=100, load_timeout_s=60, queue_timeout_s=60, max_jobs_per_client=1)
        stale_ms = 120_000  # twice the queue timeout, at least 60 s
        key = protocol.client_jobs_key("c0ffee")
        try:
            running = _job()
            await queue.submit(running, "c0ffee")
            with pytest.raises(ClientFull):
                await queue.submit(_job(), "c0ffee")
            await client.zadd(key, {running.id: 1})  # as if nobody had vouched since 1970
            await queue.vouch_for_clients_jobs()
            with pytest.raises(ClientFull):  # the vouch brought it back to now
                await queue.submit(_job(), "c0ffee")
            await client.zadd(key, {running.id: 1})
            replacement = _job()
            await queue.submit(replacement, "c0ffee")  # stale: dropped, the place is free
            assert await client.zrange(key, 0, -1) == [replacement.id.encode()]
            assert 0 < await client.pttl(key) <= stale_ms
            await queue.finished(replacement.id)
            assert await client.exists(key) == 0
            await queue.submit(_job(), None)  # no client: never counted
            assert await client.exists(key) == 0
        finally:
            await client.aclose()

    with EmbeddedRedis() as server:
        asyncio.run(scenario(server.url))


def assert_counted_as_loopback(stack: Stack, base_url: str) -> None:
    """A job sent to `base_url` claiming another address in X-Forwarded-For counts for
    127.0.0.1, the address the request really came from."""
    holder = HeldStream(base_url, {"X-Forwarded-For": "10.9.8.7"})
    try:
        loopback = protocol.client_jobs_key(client_id({"client": ("127.0.0.1", 0)}, by_api_key=False))
        assert client_counts(stack) == {loopback: 1}
    finally:
        holder.close()


def test_behind_nginx_a_client_cannot_pass_for_another_address(by_address: Stack) -> None:
    """The shipped nginx config overwrites X-Forwarded-For with the address it saw, which the
    gateway believes (nginx is on a trusted address): a client's own header changes nothing."""
    gateway = f"127.0.0.1:{by_address.port}"
    with Nginx([gateway, gateway]) as nginx:
        assert_counted_as_loopback(by_address, nginx.base_url)
    wait_for_counts(by_address, [])


def test_forwarded_addresses_count_only_from_trusted_proxies(tmp_path_factory: pytest.TempPathFactory) -> None:
    """With HERD_TRUSTED_PROXIES naming another host, a loopback client's own X-Forwarded-For is
    not believed (uvicorn's default would trust loopback and take it)."""
    with running_stack(tmp_path_factory.mktemp("proxies"), max_jobs_per_client=2,
                       trusted_proxies="10.1.2.3") as stack:
        assert_counted_as_loopback(stack, stack.base_url)
