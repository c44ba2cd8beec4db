"""Placement and recovery without a central scheduler.

Every worker runs a round each second, but only the one that takes the `janitor` lock does
the work, so the rounds never race. A round, for every model that has a job stream:
- requeues the jobs that dead workers had claimed (as a new attempt), so none is lost;
- posts a load request when jobs wait and no live worker holds the model (its holder died
  or unloaded it), so none is stranded;
- when a model's queue has stayed at least a full batch deep for a few rounds, asks one
  live worker with room that does not hold it to load a replica;
- hands the jobs in a worker's own stream back to the shared one when the worker is gone or
  no longer holds the model (all of them) or has left them unclaimed too long (the old ones).
"""

from __future__ import annotations

import logging
import time
from typing import Any

import redis.asyncio as aioredis

from herd import protocol
from herd.live_workers import live_workers
from herd.protocol import Control, Job, LoadRequest, WorkerState

log = logging.getLogger(__name__)

DEEP_ROUNDS = 3  # rounds a queue must stay deep before a replica is asked for
LOCK_MS = 2500
REPLICA_GUARD_MS = 60_000  # one replica load at a time per model


PERSONAL_WAIT_MS = 2000  # a job in a worker's own stream unclaimed this long goes to the shared one

# Move the entries of a worker's (ARGV[1]) own stream (KEYS[1]) that its group has not delivered
# and that are older than ARGV[2] ms (-1: all) to the shared stream (KEYS[2]). Atomic, so the
# owner never claims an entry that is also moved. Once the owner no longer holds the model
# (KEYS[3]: no gateway routes there any more) and nothing is left or claimed, the stream goes,
# with its entries in the personal set (KEYS[4]) and the free-slot hash (KEYS[5]). Returns how
# many entries moved.
_HAND_BACK = protocol.LUA_NOW_MS + """
local cutoff = math.huge
if tonumber(ARGV[2]) >= 0 then cutoff = now_ms - tonumber(ARGV[2]) end
local ok, groups = pcall(redis.call, 'XINFO', 'GROUPS', KEYS[1])
local last, pending = '0-0', 0
if ok then
  for _, group in ipairs(groups) do
    for i = 1, #group, 2 do
      if group[i] == 'last-delivered-id' then last = group[i + 1] end
      if group[i] == 'pending' then pending = pending + group[i + 1] end
    end
  end
end
local moved = 0
for _, entry in ipairs(redis.call('XRANGE', KEYS[1], '(' .. last, '+')) do
  if tonumber(string.match(entry[1], '^(%d+)')) >= cutoff then break end
  redis.call('XADD', KEYS[2], '*', unpack(entry[2]))
  redis.call('XDEL', KEYS[1], entry[1])
  moved = moved + 1
end
local until_ms = redis.call('ZSCORE', KEYS[3], ARGV[1])
if (not until_ms or tonumber(until_ms) <= now_ms) and pending == 0 and
    #redis.call('XRANGE', KEYS[1], '(' .. last, '+', 'COUNT', 1) == 0 then
  redis.call('DEL', KEYS[1])
  redis.call('SREM', KEYS[4], ARGV[1])
  redis.call('HDEL', KEYS[5], ARGV[1])
end
return moved
"""


async def hand_back(client: aioredis.Redis, digest: str, worker_id: str, *, older_than_ms: int = -1) -> int:
    """Jobs waiting in `worker_id`'s own stream for `digest` (those older than `older_than_ms`;
    -1: all) go to the model's shared stream, for any worker; returns how many. The stream is
    removed once its owner no longer holds the model and it is empty."""
    moved: Any = await client.eval(
        _HAND_BACK, 5, protocol.personal_jobs_key(digest, worker_id), protocol.jobs_key(digest),
        protocol.holders_key(digest), protocol.personal_set_key(digest), protocol.free_slots_key(digest),
        worker_id, older_than_ms)
    return int(moved)


async def requeue(client: aioredis.Redis, stream: str, entry_id: bytes | str, job: Job, *,
                  to: str | None = None) -> None:
    """Put a claimed job back at the end of a queue (its own stream's, or `to`), waiting again,
    in one transaction."""
    async with client.pipeline(transaction=True) as pipe:
        pipe.xadd(to or stream, {"m": protocol.encode(job)})
        pipe.zadd(protocol.WAITING_SET, {job.id: int(time.time() * 1000)})
        pipe.xack(stream, protocol.WORKERS_GROUP, entry_id)
        pipe.xdel(stream, entry_id)
        await pipe.execute()


def _holds(worker: WorkerState, digest: str) -> bool:
    """Whether the worker holds the model for new jobs (a stopping one finishes its own only)."""
    return not worker.draining and any(m.digest == digest for m in worker.loaded)


class Janitor:
    def __init__(self, client: aioredis.Redis, worker_id: str, *, load_timeout_s: float) -> None:
        self._redis = client
        self._id = worker_id
        self._load_guard_ms = max(1000, int(load_timeout_s * 1000))
        self._deep_rounds: dict[str, int] = {}

    async def round(self) -> None:
        # The lock sticks to its holder (renewed each round), so one worker keeps the counts.
        if not await self._redis.set(protocol.JANITOR_LOCK, self._id, nx=True, px=LOCK_MS):
            if await self._redis.get(protocol.JANITOR_LOCK) != self._id.encode():
                return
            await self._redis.pexpire(protocol.JANITOR_LOCK, LOCK_MS)
        workers = await live_workers(self._redis)
        digests: Any = await self._redis.smembers(protocol.MODELS_SET)
        for raw in digests:
            digest = raw.decode()
            try:
                await self._tend(digest, workers)
            except Exception:  # one bad stream must not stop the rounds for the others
                log.exception("janitor round failed for %s", digest)

    async def _tend(self, digest: str, workers: dict[str, WorkerState]) -> None:
        await self._tend_personal(digest, workers)
        stream = protocol.jobs_key(digest)
        length = int(await self._redis.xlen(stream))
        if length == 0:
            self._deep_rounds.pop(digest, None)
            return
        pending = await self._requeue_orphans(stream, workers)
        waiting = length - pending
        holders = [w for w in workers.values() if _holds(w, digest)]
        if waiting > 0 and not holders:
            await self._post_load(digest, stream)
            return
        parallel = max((m.parallel for w in holders for m in w.loaded if m.digest == digest), default=1)
        deep = waiting >= parallel
        self._deep_rounds[digest] = self._deep_rounds.get(digest, 0) + 1 if deep else 0
        if self._deep_rounds[digest] >= DEEP_ROUNDS:
            await self._ask_replica(digest, stream, holders, workers)

    async def _tend_personal(self, digest: str, workers: dict[str, WorkerState]) -> None:
        """Jobs routed to a worker's own stream never wait there for nothing: a holder gets
        PERSONAL_WAIT_MS to claim them, a worker without the model or gone gets none, and a
        dead one's claimed jobs are requeued to the shared stream as a new attempt."""
        owners: Any = await self._redis.smembers(protocol.personal_set_key(digest))
        for raw in owners:
            owner = raw.decode()
            state = workers.get(owner)
            if state is None and owner != self._id:
                await self._requeue_orphans(protocol.personal_jobs_key(digest, owner), workers,
                                            to=protocol.jobs_key(digest))
            holds = state is not None and _holds(state, digest)
            moved = await hand_back(self._redis, digest, owner, older_than_ms=PERSONAL_WAIT_MS if holds else -1)
            if moved:
                log.info("%d jobs waiting for worker %s moved to the shared queue", moved, owner)

    async def _requeue_orphans(self, stream: str, workers: dict[str, WorkerState], *, to: str | None = None) -> int:
        """Jobs claimed by workers that are gone go back in the queue (`to`, else `stream`'s);
        returns how many claimed jobs remain with live workers."""
        try:
            entries: Any = await self._redis.xpending_range(stream, protocol.WORKERS_GROUP, min="-", max="+",
                                                            count=1000)
        except aioredis.ResponseError:  # no group yet: nothing was ever claimed
            return 0
        live = 0
        for entry in entries:
            owner = entry["consumer"].decode()
            # The worker doing this round is alive whatever its heartbeat key says (a stalled
            # loop may have let it expire): never requeue its own running jobs.
            if owner in workers or owner == self._id:
                live += 1
                continue
            await self._requeue(stream, entry["message_id"], to=to)
        return live

    async def _requeue(self, stream: str, entry_id: bytes, *, to: str | None = None) -> None:
        claimed: Any = await self._redis.xclaim(stream, protocol.WORKERS_GROUP, self._id, min_idle_time=0,
                                                message_ids=[entry_id])
        if not claimed or claimed[0][1] is None:
            return
        job = protocol.decode_job(claimed[0][1][b"m"])
        job.attempt += 1
        await requeue(self._redis, stream, entry_id, job, to=to)
        log.warning("requeued job %s of a dead worker (attempt %d)", job.id, job.attempt)

    async def _post_load(self, digest: str, stream: str) -> None:
        if not await self._redis.set(protocol.loading_key(digest), b"1", nx=True, px=self._load_guard_ms):
            return
        # The workers read for this round may be older than a load that just ended: a loader
        # adds itself to the holders before it drops the loading key, so look again now.
        if await self._redis.zcount(protocol.holders_key(digest), int(time.time() * 1000), "+inf"):
            await self._redis.delete(protocol.loading_key(digest))
            return
        load = await self._load_request(digest, stream)
        await self._redis.xadd(protocol.LOADS_STREAM, {"m": protocol.encode(load)})
        log.info("jobs wait for %s and no worker holds it: load requested", load.model)

    async def _ask_replica(self, digest: str, stream: str, holders: list[WorkerState],
                           workers: dict[str, WorkerState]) -> None:
        holder_ids = {w.id for w in holders}
        candidates = [
            w for w in workers.values()
            if w.id not in holder_ids and not w.draining
            and (len(w.loaded) < w.max_loaded_models or any(m.busy == 0 for m in w.loaded))
        ]
        if not candidates:
            return
        if not await self._redis.set(protocol.replica_key(digest), b"1", nx=True, px=REPLICA_GUARD_MS):
            return
        target = min(candidates, key=lambda w: (len(w.loaded), sum(m.busy for m in w.loaded)))
        load = await self._load_request(digest, stream)
        order = Control(kind="load", digest=digest, model=load.model, weights=load.weights, adapters=load.adapters)
        await self._redis.publish(protocol.control_channel(target.id), protocol.encode(order))
        self._deep_rounds[digest] = 0
        log.info("queue for %s stays deep: asked worker %s for a replica", load.model, target.id)

    async def _load_request(self, digest: str, stream: str) -> LoadRequest:
        """What to load for a job stream, read from its first job (its weights and adapters)."""
        first: Any = await self._redis.xrange(stream, count=1)
        if not first:
            return LoadRequest(digest=digest, model="unknown")
        return LoadRequest.for_job(protocol.decode_job(first[0][1][b"m"]))
