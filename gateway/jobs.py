"""The gateway's side of the Redis contract: admit a job, follow its events, cancel it,
and read what the workers hold."""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import AsyncGenerator
from typing import Any

import redis.asyncio as aioredis

from herd import protocol
from herd.live_workers import live_workers
from herd.prompt_prefixes import LENGTHS, prefix_hashes
from herd.protocol import Control, Event, Job, LoadRequest, Token, WorkerState
from herd.redis_client import RETRIED

log = logging.getLogger(__name__)

# One round trip admits a job. A client (KEYS[7]) with MAX_JOBS_PER_CLIENT (ARGV[8], 0: none) jobs
# already queued or running gets 0 (429). At most MAX_QUEUE jobs wait (across all models; entries
# older than a stale bound are dropped first, so a crashed gateway cannot wedge a count): past it,
# nil (503). Then the job is appended to its model's stream, or to the own stream of the worker
# that last took a prompt starting alike (ARGV[11..]: pairs of length and hash of the prompt's
# prefixes, longest first, under the key base ARGV[9]; ARGV[10]: the prompt's length), when that
# worker still holds the model and has a sequence free (KEYS[8], decremented here so a burst does
# not pile onto it; the worker writes the truth back). A match shorter than half the prompt (a
# shared system prompt, say) saves less than an idle worker would: then only when no other live
# holder has more sequences free.
# If no live worker holds the model, one load request is posted (SET NX: fifty requests arriving
# together make one load). Returns the entry id and 1 when routed to a worker's own stream.
_ADMIT = protocol.LUA_NOW_MS + """
local per_client = tonumber(ARGV[8])
if per_client > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[7], '-inf', now_ms - tonumber(ARGV[6]))
  if redis.call('ZCARD', KEYS[7]) >= per_client then return 0 end
end
redis.call('ZREMRANGEBYSCORE', KEYS[5], '-inf', now_ms - tonumber(ARGV[6]))
if redis.call('ZCARD', KEYS[5]) >= tonumber(ARGV[1]) then return false end
local function live(worker)
  local until_ms = redis.call('ZSCORE', KEYS[2], worker)
  return until_ms and tonumber(until_ms) > now_ms
end
local stream, routed = KEYS[1], 0
for i = 11, #ARGV, 2 do
  local worker = redis.call('GET', ARGV[9] .. ARGV[i + 1])
  if worker then
    local free = tonumber(redis.call('HGET', KEYS[8], worker) or '0')
    local worth = free > 0 and live(worker)
    if worth and tonumber(ARGV[i]) * 2 < tonumber(ARGV[10]) then
      local all = redis.call('HGETALL', KEYS[8])
      for j = 1, #all, 2 do
        if all[j] ~= worker and tonumber(all[j + 1]) > free and live(all[j]) then worth = false end
      end
    end
    if worth then
      redis.call('HINCRBY', KEYS[8], worker, -1)
      stream = KEYS[1] .. ':' .. worker
      routed = 1
    end
    break  -- the longest prefix known decides; its worker busy or gone: the shared stream
  end
end
local id = redis.call('XADD', stream, '*', 'm', ARGV[2])
redis.call('ZADD', KEYS[5], now_ms, ARGV[5])
redis.call('SADD', KEYS[6], ARGV[7])
if per_client > 0 then
  redis.call('ZADD', KEYS[7], now_ms, ARGV[5])
  redis.call('PEXPIRE', KEYS[7], ARGV[6])
end
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now_ms)
if redis.call('ZCARD', KEYS[2]) == 0 then
  if redis.call('SET', KEYS[3], '1', 'NX', 'PX', ARGV[4]) then
    redis.call('XADD', KEYS[4], '*', 'm', ARGV[3])
  end
end
return {id, routed}
"""

# The gateway following a client's jobs vouches for them now and then (KEYS: the clients' sets,
# ARGV: the job ids, then the stale bound), so a job that runs long is not taken for one whose
# gateway died; a job already released is not added back.
_VOUCH = protocol.LUA_NOW_MS + """
for i, key in ipairs(KEYS) do
  redis.call('ZADD', key, 'XX', now_ms, ARGV[i])
  redis.call('PEXPIRE', key, ARGV[#ARGV])
end
return #KEYS
"""


_XREAD_COUNT = 256  # events taken per read at most


def _message(fields: list[bytes]) -> bytes:
    """The `m` field of a raw stream entry ([name, value, name, value, ...])."""
    for i in range(0, len(fields) - 1, 2):
        if fields[i] == b"m":
            return fields[i + 1]
    raise KeyError(b"m")  # what the redis-py reply's dict would raise


class QueueFull(Exception):
    """MAX_QUEUE jobs already wait."""


class ClientFull(Exception):
    """The client already has MAX_JOBS_PER_CLIENT jobs queued or running."""


def new_job_id() -> str:
    return secrets.token_hex(12)


class JobQueue:
    def __init__(self, client: aioredis.Redis, *, max_queue: int, load_timeout_s: float,
                 queue_timeout_s: float, max_jobs_per_client: int = 0, prefix_routing: bool = True) -> None:
        self._redis = client
        self.max_queue = max_queue
        self.queue_timeout_s = queue_timeout_s
        self.max_jobs_per_client = max_jobs_per_client
        self.prefix_routing = prefix_routing
        self._load_timeout_ms = max(1000, int(load_timeout_s * 1000))
        self._stale_ms = int(max(queue_timeout_s, 60) * 2 * 1000)
        self._admit = client.register_script(_ADMIT)
        self._vouch = client.register_script(_VOUCH)
        self._clients: dict[str, str] = {}  # job id -> its client's set, for the jobs this gateway follows
        self.gateway_id = secrets.token_hex(8)

    async def submit(self, job: Job, client: str | None = None) -> bool:
        """Queue `job`; with a per-client limit, `client` (a `gateway.clients.client_id`) is counted.
        Raises ClientFull or QueueFull, having queued nothing. Returns whether the job went to the
        worker that took a prompt starting like its own (routing by prefix)."""
        job.gateway = job.gateway or self.gateway_id
        if self.prefix_routing and job.prompt is not None and not job.prefixes:
            job.prefixes = prefix_hashes(job.prompt)
        load = LoadRequest.for_job(job)
        client_key = protocol.client_jobs_key(client) if client and self.max_jobs_per_client else None
        admitted = await self._admit(
            keys=[
                protocol.jobs_key(job.digest),
                protocol.holders_key(job.digest),
                protocol.loading_key(job.digest),
                protocol.LOADS_STREAM,
                protocol.WAITING_SET,
                protocol.MODELS_SET,
                client_key or protocol.WAITING_SET,  # read only with a limit
                protocol.free_slots_key(job.digest),
            ],
            args=[self.max_queue, protocol.encode(job), protocol.encode(load), self._load_timeout_ms, job.id,
                  self._stale_ms, job.digest, self.max_jobs_per_client if client_key else 0,
                  protocol.prefix_key_base(job.digest), *self._prefix_args(job)],
        )
        if admitted is None:
            raise QueueFull()
        if admitted == 0:
            raise ClientFull()
        if client_key:
            self._clients[job.id] = client_key
        return bool(admitted[1])

    @staticmethod
    def _prefix_args(job: Job) -> list[str | int]:
        """The prompt's length, then (length, hash) of each prefix, longest first."""
        if not job.prefixes or job.prompt is None:
            return []
        lengths = LENGTHS[:len(job.prefixes)][::-1]
        return [len(job.prompt.encode()), *(x for pair in zip(lengths, job.prefixes, strict=True) for x in pair)]

    async def finished(self, job_id: str) -> None:
        """The job ended (its last event came): its client may queue another."""
        client_key = self._clients.get(job_id)
        if client_key:
            try:
                await self._redis.zrem(client_key, job_id)
            except RETRIED as exc:  # the answer is whole: never fail it for this; the stale bound frees the place
                log.warning("could not release job %s from its client's count: %s", job_id, exc)
            del self._clients[job_id]  # only now: if this is cancelled, `cancel` still releases it

    async def vouch_for_clients_jobs(self) -> None:
        """Mark every client job this gateway follows as still alive (see `keep_beating`)."""
        if self._clients:
            job_ids = list(self._clients)
            await self._vouch(keys=[self._clients[i] for i in job_ids], args=[*job_ids, self._stale_ms])

    async def beat(self) -> None:
        """Say this gateway is alive: workers drop the jobs of a gateway whose heartbeat is gone."""
        await self._redis.set(protocol.gateway_key(self.gateway_id), b"1", px=protocol.GATEWAY_TTL_S * 1000)

    async def keep_beating(self) -> None:
        """Run for the gateway's life: its heartbeat every second, and its clients' jobs vouched
        for four times per stale bound (a client's job is dropped from its count once nobody has
        vouched for it within the bound: its gateway died)."""
        vouched = time.monotonic()
        while True:
            await asyncio.sleep(protocol.HEARTBEAT_INTERVAL_S)
            try:
                await self.beat()
                if time.monotonic() - vouched >= self._stale_ms / 4000:
                    vouched = time.monotonic()
                    await self.vouch_for_clients_jobs()
            except RETRIED as exc:  # Redis away for now: the next round tries again
                log.warning("gateway heartbeat: %s", exc)

    async def events(self, job_id: str, *, poll_ms: int = 1000) -> AsyncGenerator[Event, None]:
        """Every event of the job, in order, each once, ending after Done, Embeddings or Error.

        Reads the job's stream from the start, so nothing is lost to a late reader. Events
        of an attempt older than one already seen (a worker presumed dead that was not) are
        skipped; what a new attempt means for the client is the caller's business.
        """
        key = protocol.events_key(job_id)
        last_id: bytes | str = "0-0"
        seen = (0, -1)
        while True:
            for entry_id, data in await self._xread(key, last_id, poll_ms):
                last_id = entry_id
                event = protocol.decode_event(data)
                if (event.attempt, event.seq) <= seen:
                    continue
                seen = (event.attempt, event.seq)
                yield event
                if not isinstance(event, Token):
                    return

    async def _xread(self, key: str, last_id: bytes | str, block_ms: int) -> list[tuple[bytes, bytes]]:
        """The next entries of one events stream as (id, message), [] after `block_ms` without one.

        One XREAD per token a client sees: redis-py's execute_command (retry wrapper,
        observability hooks, reply callbacks) was most of the Python work per streamed token,
        so the command is sent on a pooled connection directly. A connection that fails
        is dropped and the read made again the ordinary way, with the client's retry policy;
        one cancelled mid-read is disconnected by redis-py, never reused with a reply pending.
        """
        pool = self._redis.connection_pool
        try:
            conn = await pool.get_connection()  # type: ignore[no-untyped-call]  # redis-py leaves it untyped
            try:
                await conn.send_command("XREAD", "COUNT", _XREAD_COUNT, "BLOCK", block_ms, "STREAMS", key, last_id)
                reply: Any = await conn.read_response()
            finally:
                await pool.release(conn)
        except RETRIED:
            reply = await self._redis.xread({key: last_id}, block=block_ms, count=_XREAD_COUNT)
            return [(entry_id, fields[b"m"]) for entry_id, fields in (reply[0][1] if reply else [])]
        if not reply:
            return []
        entries = next(iter(reply.values())) if isinstance(reply, dict) else reply[0][1]  # RESP3 | RESP2
        return [(entry_id, _message(fields)) for entry_id, fields in entries]

    async def cancel(self, job_id: str) -> None:
        """The client went away or gave up: tell whichever worker has the job (or will claim it)."""
        client_key = self._clients.pop(job_id, None)
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.set(protocol.cancel_key(job_id), b"1", ex=protocol.CANCEL_TTL_S)
            pipe.zrem(protocol.WAITING_SET, job_id)
            if client_key:
                pipe.zrem(client_key, job_id)
            pipe.publish(protocol.CANCELS_CHANNEL, job_id)
            await pipe.execute()

    async def unload(self, digest: str) -> None:
        """Every worker holding the model unloads it once idle (`keep_alive: 0`, `herd stop`)."""
        await self._redis.publish(protocol.CONTROL_CHANNEL, protocol.encode(Control(kind="unload", digest=digest)))

    async def workers(self) -> list[WorkerState]:
        """The live workers' last heartbeats, in id order."""
        return list((await live_workers(self._redis)).values())

    async def waiting(self) -> int:
        return int(await self._redis.zcard(protocol.WAITING_SET))
