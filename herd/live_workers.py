"""The live workers, read from Redis the one way gateways (`/api/ps`, metrics) and workers (the
janitor, the crowding check) both need: one SMEMBERS of the index and one MGET of heartbeats."""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis

from herd import protocol
from herd.protocol import WorkerState


async def live_workers(client: aioredis.Redis) -> dict[str, WorkerState]:
    """The workers whose heartbeat has not expired, by id, in id order. Ids whose heartbeat
    expired are dropped from the index on the way (a dead worker never removes itself)."""
    members: Any = await client.smembers(protocol.WORKERS_SET)
    ids = sorted(member.decode() for member in members)
    if not ids:
        return {}
    states: list[Any] = await client.mget([protocol.worker_key(i) for i in ids])
    dead = [i for i, state in zip(ids, states, strict=True) if state is None]
    if dead:
        await client.srem(protocol.WORKERS_SET, *dead)
    return {i: protocol.decode_worker(state) for i, state in zip(ids, states, strict=True) if state is not None}
