"""The gateway's side of the Redis contract: admit a job, follow its events, cancel it."""

from __future__ import annotations

import secrets
from collections.abc import AsyncGenerator
from typing import Any

import redis.asyncio as aioredis

from herd import protocol
from herd.protocol import Event, Job, LoadRequest

# One round trip admits a job: refuse when the model's queue is full, otherwise append it,
# and if no live worker holds the model, post one load request (SET NX: fifty requests
# arriving together make one load).
_ADMIT = """
if redis.call('XLEN', KEYS[1]) >= tonumber(ARGV[1]) then return false end
local id = redis.call('XADD', KEYS[1], '*', 'm', ARGV[2])
local now = redis.call('TIME')
local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now_ms)
if redis.call('ZCARD', KEYS[2]) == 0 then
  if redis.call('SET', KEYS[3], '1', 'NX', 'PX', ARGV[4]) then
    redis.call('XADD', KEYS[4], '*', 'm', ARGV[3])
  end
end
return id
"""


class QueueFull(Exception):
    """MAX_QUEUE jobs already wait for this model."""


def new_job_id() -> str:
    return secrets.token_hex(12)


class JobQueue:
    def __init__(self, client: aioredis.Redis, *, max_queue: int, load_timeout_s: float) -> None:
        self._redis = client
        self._max_queue = max_queue
        self._load_timeout_ms = max(1000, int(load_timeout_s * 1000))
        self._admit = client.register_script(_ADMIT)

    async def submit(self, job: Job) -> None:
        load = LoadRequest(digest=job.digest, model=job.model)
        entry_id = await self._admit(
            keys=[
                protocol.jobs_key(job.digest),
                protocol.holders_key(job.digest),
                protocol.loading_key(job.digest),
                protocol.LOADS_STREAM,
            ],
            args=[self._max_queue, protocol.encode(job), protocol.encode(load), self._load_timeout_ms],
        )
        if entry_id is None:
            raise QueueFull()

    async def events(self, job_id: str, *, poll_ms: int = 1000) -> AsyncGenerator[Event, None]:
        """Every event of the job, in order, each once, ending after Done or Error.

        Reads the job's stream from the start, so nothing is lost to a late reader; an event
        repeated by a retried attempt (same attempt and seq) is skipped.
        """
        key = protocol.events_key(job_id)
        last_id = "0-0"
        seen: tuple[int, int] = (-1, -1)
        while True:
            reply: Any = await self._redis.xread({key: last_id}, block=poll_ms, count=256)
            if not reply:
                continue
            for entry_id, fields in reply[0][1]:
                last_id = entry_id
                event = protocol.decode_event(fields[b"m"])
                if (event.attempt, event.seq) <= seen:
                    continue
                seen = (event.attempt, event.seq)
                yield event
                if not isinstance(event, protocol.Token):
                    return

    async def cancel(self, job_id: str) -> None:
        """The client went away: tell whichever worker has the job (or will claim it)."""
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.set(protocol.cancel_key(job_id), b"1", ex=protocol.CANCEL_TTL_S)
            pipe.publish(protocol.CANCELS_CHANNEL, job_id)
            await pipe.execute()

    async def forget(self, job_id: str) -> None:
        await self._redis.delete(protocol.events_key(job_id))
