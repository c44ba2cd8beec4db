"""A conversation's next turn goes to the worker that holds its earlier turns' cells, with
several real workers on one Redis; a job routed to a worker that stalls or dies is served by
another."""

from __future__ import annotations

import asyncio
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
import redis

from gateway.jobs import JobQueue, new_job_id
from herd import protocol
from herd.processes import EmbeddedRedis
from herd.prompt_prefixes import prefix_hashes
from herd.protocol import Job
from herd.redis_client import async_client
from tests.stack import Stack, running_stack
from worker.janitor import hand_back

MODEL = "smollm2:135m"
TAIL = 65  # a prompt's last tokens are always decoded again (worker/kept_cells.py)


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """Two workers, both holding the model (the first load is one worker's; the other is
    ordered to load a replica, as the janitor would when the queue stays deep)."""
    with running_stack(tmp_path_factory.mktemp("affinity"), workers=2, num_parallel=2) as stack:
        stack.load_on_every_worker(MODEL)
        yield stack


def _sdk(stack: Stack) -> openai.OpenAI:
    return openai.OpenAI(base_url=stack.base_url + "/v1", api_key="unused", max_retries=0, timeout=120,
                         _strict_response_validation=True)


class Chat:
    """A conversation with a system prompt of its own (so no other chat shares its start)."""

    def __init__(self, stack: Stack, topic: str) -> None:
        self.sdk = _sdk(stack)
        facts = " ".join(f"Fact {i} about {topic}: it is item number {i} in the {topic} list." for i in range(20))
        self.messages: list[Any] = [{"role": "system", "content": f"You answer questions about {topic}. {facts}"}]
        self.prompt_tokens: list[int] = []
        self.cached_tokens: list[int] = []

    def turn(self, question: str) -> None:
        self.messages.append({"role": "user", "content": question})
        answer = self.sdk.chat.completions.create(model=MODEL, messages=self.messages, max_tokens=12, temperature=0)
        self.messages.append({"role": "assistant", "content": answer.choices[0].message.content or ""})
        assert answer.usage is not None and answer.usage.prompt_tokens_details is not None
        self.prompt_tokens.append(answer.usage.prompt_tokens)
        self.cached_tokens.append(answer.usage.prompt_tokens_details.cached_tokens or 0)

    def found_history(self, turn: int) -> bool:
        """Whether turn `turn` (0-based) found the previous turn's prompt already decoded."""
        return self.cached_tokens[turn] >= self.prompt_tokens[turn - 1] - TAIL


def _workers_named(stack: Stack) -> set[str]:
    db = redis.Redis.from_url(stack.redis_url)
    return {db.get(key).decode() for key in db.scan_iter("herd:prefix:*")}  # type: ignore[union-attr]


def _process(stack: Stack, worker_id: str) -> subprocess.Popen[bytes]:
    pid = int(worker_id.rsplit("-", 2)[1])  # ids are host-pid-random
    return next(p for p in stack.workers if p.pid == pid)


def test_each_turn_goes_where_the_conversation_is(pair: Stack) -> None:
    # Without routing each later turn finds its history with chance 1/2: all nine, 1 in 512.
    chats = [Chat(pair, topic) for topic in ("rivers", "mountains", "bridges")]
    for question in ("Name one.", "Another one?", "Which is first?", "And the last?"):
        for chat in chats:
            chat.turn(question)
    misses = [(i, t) for i, chat in enumerate(chats) for t in range(1, 4) if not chat.found_history(t)]
    assert not misses, [(chat.prompt_tokens, chat.cached_tokens) for chat in chats]
    metrics = httpx.get(pair.base_url + "/metrics", timeout=10).text
    routed = re.search(r"^herd_jobs_routed_by_prefix_total (\S+)$", metrics, flags=re.MULTILINE)
    assert routed is not None and float(routed[1]) >= 9  # every later turn was routed


def test_a_turn_routed_to_a_stalled_or_dead_worker_is_served_by_the_other(pair: Stack) -> None:
    db = redis.Redis.from_url(pair.redis_url)
    for key in db.scan_iter("herd:prefix:*"):
        db.delete(key)
    chat = Chat(pair, "lighthouses")
    chat.turn("Name one.")
    chat.turn("Another one?")
    assert chat.found_history(1)
    (holder_id,) = _workers_named(pair)
    holder = _process(pair, holder_id)

    holder.send_signal(signal.SIGSTOP)  # its heartbeat lives on a few seconds: the turn is routed to it
    try:
        started = time.monotonic()
        chat.turn("Which is first?")
        assert time.monotonic() - started < 15  # handed to the other worker, not left waiting
        assert not chat.found_history(2)
        assert holder_id not in _workers_named(pair)  # the other worker is named for its prompt now
    finally:
        holder.send_signal(signal.SIGCONT)

    holder.kill()  # dead: the next turn goes to the shared queue at once, and nothing of it is left
    holder.wait()
    chat.turn("And the last?")
    stream, owners = f"herd:jobs:{_digest(db)}:{holder_id}", f"herd:personal:{_digest(db)}"

    def left_behind() -> bool:
        return bool(db.exists(stream)) or holder_id.encode() in db.smembers(owners)

    deadline = time.monotonic() + 20  # its heartbeat expires (5 s), then the janitor's next round
    while left_behind() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not left_behind()
    assert db.hget(f"herd:free:{_digest(db)}", holder_id) is None

def _digest(db: redis.Redis) -> str:
    (key,) = list(db.scan_iter("herd:holders:*"))
    return str(key.decode().rsplit(":", 1)[1])



def test_hand_back_moves_only_unclaimed_jobs_and_cleans_up_after_the_owner() -> None:
    digest, owner = "0" * 64, "worker-a"
    personal, shared = protocol.personal_jobs_key(digest, owner), protocol.jobs_key(digest)

    async def scenario(url: str) -> None:
        client = async_client(url)
        try:
            for stream in (personal, shared):
                await client.xgroup_create(stream, protocol.WORKERS_GROUP, id="0", mkstream=True)
            await client.sadd(protocol.personal_set_key(digest), owner)
            await client.hset(protocol.free_slots_key(digest), owner, 1)
            await client.zadd(protocol.holders_key(digest), {owner: int(time.time() * 1000) + 60_000})
            for i in range(3):
                await client.xadd(personal, {"m": f"job{i}"})
            claimed: Any = await client.xreadgroup(protocol.WORKERS_GROUP, owner, {personal: ">"}, count=1)

            assert await hand_back(client, digest, owner, older_than_ms=60_000) == 0  # too recent
            assert await hand_back(client, digest, owner) == 2  # the claimed one stays with its owner
            moved: Any = await client.xrange(shared)
            assert [fields[b"m"] for _, fields in moved] == [b"job1", b"job2"]
            assert await client.exists(personal)  # its owner still holds the model

            await client.zrem(protocol.holders_key(digest), owner)  # unloaded
            assert await hand_back(client, digest, owner) == 0
            assert await client.exists(personal)  # a job of it still runs there
            await client.xack(personal, protocol.WORKERS_GROUP, claimed[0][1][0][0])
            assert await hand_back(client, digest, owner) == 0
            assert not await client.exists(personal)
            assert not await client.sismember(protocol.personal_set_key(digest), owner)
            assert await client.hget(protocol.free_slots_key(digest), owner) is None
        finally:
            await client.aclose()

    with EmbeddedRedis() as server:
        asyncio.run(scenario(server.url))


@pytest.mark.parametrize(("own_free", "other_free", "prompt_bytes", "alive", "routed"), [
    (1, 2, 600, True, True),  # the match (500 of 600 bytes) is most of the prompt: worth a busier worker
    (1, 2, 1100, True, False),  # a short shared start (500 of 1100): the freer worker may take it
    (2, 2, 1100, True, True),  # ... but not when it is no freer
    (0, 2, 600, True, False),  # no sequence free there
    (1, 0, 600, False, False),  # its heartbeat expired
])
def test_admission_routes_by_prefix_when_it_pays(own_free: int, other_free: int, prompt_bytes: int, alive: bool,
                                                 routed: bool) -> None:
    digest, owner, other = "1" * 64, "worker-own", "worker-other"
    shared = "<|im_start|>system\n" + "You are a helpful assistant who knows a lot. " * 11  # > 512 bytes
    earlier = shared[:512] + "first chat" * 20
    prompt = (shared[:512] + "x" * prompt_bytes)[:prompt_bytes]

    async def scenario(url: str) -> None:
        client = async_client(url)
        queue = JobQueue(client, max_queue=100, load_timeout_s=60, queue_timeout_s=60)
        try:
            now_ms = int(time.time() * 1000)
            await client.zadd(protocol.holders_key(digest), {owner: now_ms + (5000 if alive else -1000),
                                                             other: now_ms + 5000})
            await client.hset(protocol.free_slots_key(digest), mapping={owner: own_free, other: other_free})
            for prefix in prefix_hashes(earlier):  # the owner took a prompt starting like this one
                await client.set(protocol.prefix_key_base(digest) + prefix, owner)
            assert await queue.submit(Job(id=new_job_id(), model=MODEL, digest=digest, prompt=prompt)) is routed
            personal = protocol.personal_jobs_key(digest, owner)
            assert (await client.xlen(personal), await client.xlen(protocol.jobs_key(digest))) == \
                ((1, 0) if routed else (0, 1))
            assert int(await client.hget(protocol.free_slots_key(digest), owner) or -99) == own_free - routed
        finally:
            await client.aclose()

    with EmbeddedRedis() as server:
        asyncio.run(scenario(server.url))
