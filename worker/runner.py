"""A worker process: claims jobs from Redis for the models it holds, runs them through
their engines, and streams each job's events back.

Everything here is asyncio on one thread; each loaded model decodes on its own thread
(`EngineThread`), which writes its jobs' events to Redis itself and reports back only
which jobs ended. Events for jobs that never reach an engine (a load-only request, a model
that failed to load) and the jobs' acknowledgements go out from here in one pipeline.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import re
import secrets
import socket
import time
from collections.abc import Sequence
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError, ResponseError

from herd import protocol
from herd.config import Config
from herd.cpus import usable_cores
from herd.live_workers import live_workers
from herd.protocol import Done, Error, Job, WorkerState
from herd.redis_client import RETRIED, async_client
from worker.embedder import Embedder
from worker.engine import Engine
from worker.engine_thread import EngineThread
from worker.event_writer import EventWriter, TtlClock
from worker.hosted import HostedModel, RunningJob
from worker.janitor import Janitor, hand_back, requeue
from worker.job_events import JobEvents

log = logging.getLogger(__name__)

_CLAIM_BLOCK_MS = 1000
_FLUSH_RETRY_S = 0.5
_REDIS_RETRY_S = 0.5  # how often a worker's loops try again while Redis is unreachable
_GATEWAY_GRACE_S = 3.0  # a gateway's heartbeat missing this long (past its TTL) means it is gone, not
#                          that Redis restarted a moment ago and it has not beaten again yet
_CROWDING_CHECK_BEATS = 30  # how often a worker looks for others sharing its cores
_FIRST_CROWDING_CHECK = 3  # beats after start: the others started with it have beaten by then


def default_worker_id() -> str:
    host = re.sub(r"[^0-9a-zA-Z_-]", "-", socket.gethostname())[:32]
    return f"{host}-{os.getpid()}-{secrets.token_hex(2)}"


class Worker:
    def __init__(self, config: Config, redis_url: str, *, worker_id: str | None = None) -> None:
        self.config = config
        self.id = worker_id or default_worker_id()
        self.threads = config.num_thread or usable_cores()
        self._crowded_warned: frozenset[str] = frozenset()
        self._redis_url = redis_url
        self.models: dict[str, HostedModel] = {}
        self._loading: set[str] = set()
        self._outbox: list[tuple[str, bytes]] = []  # (events key, encoded event)
        self._acks: list[tuple[str, str]] = []  # (job stream, entry id)
        self._free_changed: set[str] = set()  # models whose free sequences gateways should learn
        self._named: list[Job] = []  # started jobs whose prompt prefixes should name this worker
        self._ttl = TtlClock()
        self._outbox_ready = asyncio.Event()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._claim_client_id: int | None = None
        self._redis_lost = False  # a loop found Redis unreachable (said once until it is back)
        self.draining = False  # stopping: no new jobs, running ones finish (`_drain`)
        self._gateway_missing: dict[str, float] = {}  # gateway id -> when its heartbeat was first found gone
        self._redis: aioredis.Redis
        self._claim: aioredis.Redis

    # ---- lifecycle -------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        self._redis = async_client(self._redis_url)
        self._claim = async_client(self._redis_url, single_connection_client=True)
        self._claim_client_id = int(await self._claim.client_id())
        assert self._claim.connection is not None  # made by the command above
        self._claim.connection.register_connect_callback(self._on_claim_connect)  # type: ignore[no-untyped-call]
        await self._ensure_group(protocol.LOADS_STREAM)
        claiming = asyncio.create_task(self._claim_loop(), name="claim")
        loops = [
            claiming,
            asyncio.create_task(self._publish_loop(), name="publish"),
            asyncio.create_task(self._heartbeat_loop(), name="heartbeat"),
            asyncio.create_task(self._listen_loop(), name="listen"),
        ]
        log.info("worker %s ready", self.id)
        try:
            await stop.wait()
            claiming.cancel()
            await self._drain()
        finally:
            for task in loops:
                task.cancel()
            await asyncio.gather(*loops, return_exceptions=True)
            await self._shutdown()

    async def _drain(self) -> None:
        """Stopping: take no new work and let the answers being generated finish, for up to
        HERD_DRAIN_TIMEOUT. Gateways stop routing here, the janitor stops counting this worker
        as a holder (so jobs waiting for its models get another worker, loading them if need
        be), and the jobs routed to its own streams go back to the shared ones."""
        self.draining = True
        busy = [h for h in self.models.values() if h.busy]
        if busy and self.config.drain_timeout > 0:
            log.info("stopping: finishing %d running answers (up to %gs, HERD_DRAIN_TIMEOUT)",
                     sum(len(h.running) for h in busy), self.config.drain_timeout)
        try:
            for host in list(self.models.values()):
                await self._stop_being_reached(host)
            await self._publish_holdings()
        except RETRIED:
            log.warning("Redis unreachable while stopping: other workers take over once this one is gone")
        deadline = time.monotonic() + self.config.drain_timeout
        while any(h.busy for h in self.models.values()) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)

    async def _shutdown(self) -> None:
        for host in list(self.models.values()):
            for running in list(host.running.values()):
                self._finish(host, running)  # its engine thread ends it with "the worker stopped"
            await self._unload(host)
        await self._flush()
        await self._redis.delete(protocol.worker_key(self.id))
        await self._redis.srem(protocol.WORKERS_SET, self.id)
        await self._claim.aclose()
        await self._redis.aclose()

    async def _ensure_group(self, stream: str) -> None:
        try:
            await self._redis.xgroup_create(stream, protocol.WORKERS_GROUP, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ---- claiming ----------------------------------------------------------------------

    def _room_for_load(self) -> bool:
        held = len(self.models) + len(self._loading)
        if held < self.config.max_loaded_models:
            return True
        return any(not h.busy for h in self.models.values())

    async def _claim_loop(self) -> None:
        while True:
            try:
                await self._claim_once()
            except RETRIED:
                await self._redis_down("claiming jobs")

    async def _on_claim_connect(self, connection: Any) -> None:
        """The claim connection connected again (Redis restarted or dropped it): CLIENT UNBLOCK
        needs its new id, or freed slots would wait for the claim's block to time out."""
        await connection.send_command("CLIENT", "ID")
        self._claim_client_id = int(await connection.read_response())

    async def _redis_down(self, doing: str) -> None:
        """A loop lost Redis (restarted, unreachable): say so once, wait, and let it try again."""
        if not self._redis_lost:
            log.warning("Redis is unreachable (%s); retrying every %.1f s", doing, _REDIS_RETRY_S)
        self._redis_lost = True
        await asyncio.sleep(_REDIS_RETRY_S)

    async def _claim_once(self) -> None:
        """One claim: this worker's own job streams first, without waiting (their jobs find their
        prompts' cells here; read together with a backlog in the shared stream, the shared ones
        beyond the free slots would go back to its end), then a blocking read of every stream of
        the models with a free slot (and of loads, with room)."""
        free = {host.digest: host.free_slots for host in self.models.values() if host.free_slots > 0}
        count = min(free.values(), default=1)
        own = {protocol.personal_jobs_key(digest, self.id): ">" for digest in free}
        if own and await self._claim_from(own, count, block_ms=None):
            return
        streams: dict[Any, Any] = {**own, **{protocol.jobs_key(digest): ">" for digest in free}}
        if self._room_for_load():
            streams[protocol.LOADS_STREAM] = ">"
        if not streams:
            await asyncio.sleep(0.05)
            return
        await self._claim_from(streams, count, block_ms=_CLAIM_BLOCK_MS)

    async def _claim_from(self, streams: dict[Any, Any], count: int, *, block_ms: int | None) -> bool:
        """Claim up to `count` entries of each stream and start them; whether any came."""
        try:
            reply: Any = await self._claim.xreadgroup(protocol.WORKERS_GROUP, self.id, streams, count=count,
                                                      block=block_ms)
        except ResponseError as exc:
            if "NOGROUP" in str(exc):  # a stream was deleted under us (or Redis restarted empty)
                held = {protocol.LOADS_STREAM, *(key for digest in self.models for key in self._job_streams(digest))}
                for stream in held & set(streams):  # not the own stream of a model just unloaded
                    await self._ensure_group(stream)
                return False
            raise
        if self._redis_lost:
            log.warning("Redis is back")
            self._redis_lost = False
        own = f":{self.id}".encode()
        for stream_name, entries in sorted(reply or [], key=lambda item: not item[0].endswith(own)):
            stream = stream_name.decode()
            if stream == protocol.LOADS_STREAM:
                for entry_id, fields in entries:
                    self._start_load(entry_id.decode(), protocol.decode_load(fields[b"m"]))
            else:
                await self._start_jobs(stream, entries)
        return bool(reply)

    def _job_streams(self, digest: str) -> tuple[str, str]:
        """Where this worker claims a model's jobs: the shared stream and its own."""
        return protocol.jobs_key(digest), protocol.personal_jobs_key(digest, self.id)

    async def _unblock_claim(self) -> None:
        """A slot freed up: make the claim loop re-read with the new set of streams."""
        if self._claim_client_id is not None:
            await self._redis.client_unblock(self._claim_client_id)

    async def _start_jobs(self, stream: str, entries: list[tuple[bytes, dict[bytes, bytes]]]) -> None:
        jobs = [(entry_id.decode(), protocol.decode_job(fields[b"m"])) for entry_id, fields in entries]
        async with self._redis.pipeline(transaction=False) as pipe:
            for _, job in jobs:
                pipe.exists(protocol.cancel_key(job.id))
                if job.gateway:
                    pipe.exists(protocol.gateway_key(job.gateway))
                else:
                    pipe.ping()  # two replies per job, whatever it holds
            pipe.zrem(protocol.WAITING_SET, *[job.id for _, job in jobs])
            replies = (await pipe.execute())[:-1]
        now = time.time()
        too_old = now - self.config.queue_timeout
        # A job's gateway silent past its heartbeat's TTL and the grace, from before the job
        # was queued: it is gone (a job queued after a Redis restart may not find its gateway's
        # beat again yet, but it is young).
        orphan_before = now - protocol.GATEWAY_TTL_S - _GATEWAY_GRACE_S
        for (entry_id, job), gone, reader in zip(jobs, replies[0::2], replies[1::2], strict=True):
            host = self.models.get(job.digest)
            running = RunningJob(job=job, entry_id=entry_id, stream=stream, attempt=job.attempt)
            orphaned = not reader and job.created < orphan_before
            if orphaned:
                log.warning("job %s: its gateway %s is gone; dropped", job.id, job.gateway)
            # The client left, or its gateway gave up waiting or died: nobody would read the answer.
            if gone or orphaned or job.created < too_old:
                self._acks.append((stream, entry_id))
                continue
            if host is None or host.free_slots <= 0:
                # Unloaded while this claim was in flight, or one read took jobs from both this
                # worker's own stream and the shared one beyond the free slots: back in the queue.
                await requeue(self._redis, stream, entry_id, job, to=protocol.jobs_key(job.digest))
                continue
            if job.keep_alive is not None:
                host.keep_alive = math.inf if job.keep_alive < 0 else job.keep_alive
            if job.prompt is None and job.embed is None:
                self._emit_event(running, self._loaded(host, running))
                self._acks.append((stream, entry_id))
                continue
            host.running[job.id] = running
            self._free_changed.add(host.digest)
            if job.prefixes:  # a later prompt starting like this one finds its cells here
                self._named.append(job)
            if job.user:
                log.info("job %s for %s from user %r", job.id, job.model, job.user)
            host.thread.start(job, attempt=running.attempt, load_duration_ns=self._load_ns(host, running))
        self._outbox_ready.set()

    # ---- loading -----------------------------------------------------------------------

    def _start_load(self, entry_id: str | None, request: protocol.LoadRequest) -> None:
        self._spawn(self._load(entry_id, request))

    async def _load(self, entry_id: str | None, request: protocol.LoadRequest) -> None:
        """Load a model: for a load request (acknowledged at the end) or a replica order."""
        digest = request.digest
        try:
            if digest in self.models or digest in self._loading:
                return
            if not await self._make_room():
                # Every model here is busy: never evict one mid-request. Hand the load back.
                if entry_id is not None:
                    await self._redis.xadd(protocol.LOADS_STREAM, {"m": protocol.encode(request)})
                return
            self._loading.add(digest)
            started = time.perf_counter_ns()
            try:
                engine = await asyncio.to_thread(self._open_engine, request)
            except Exception as exc:
                log.exception("loading %s failed", request.model)
                await self._fail_waiting(digest, f"failed to load model '{request.model}': {exc}")
                return
            finally:
                self._loading.discard(digest)
            host = HostedModel(
                digest=digest,
                name=request.model,
                thread=EngineThread(engine, asyncio.get_running_loop(), JobEvents(EventWriter(self._redis_url)),
                                    lambda ended: self._on_ended(digest, ended), name=f"engine-{digest[:8]}",
                                    make_embedder=lambda: self._open_embedder(engine)),
                size=engine.size_bytes,
                context_length=engine.ctx_per_seq,
                parallel=engine.n_parallel,
                keep_alive=self.config.keep_alive,
                load_duration_ns=time.perf_counter_ns() - started,
            )
            self.models[digest] = host
            for stream in self._job_streams(digest):
                await self._ensure_group(stream)
            await self._publish_holdings()
            log.info("loaded %s (%.2fs)%s", request.model, host.load_duration_ns / 1e9,
                     " as a replica" if entry_id is None else "")
        finally:
            async with self._redis.pipeline(transaction=False) as pipe:
                if entry_id is None:
                    pipe.delete(protocol.replica_key(digest))
                else:
                    pipe.delete(protocol.loading_key(digest))
                    pipe.xack(protocol.LOADS_STREAM, protocol.WORKERS_GROUP, entry_id)
                    pipe.xdel(protocol.LOADS_STREAM, entry_id)
                await pipe.execute()
            await self._unblock_claim()

    def _blob(self, digest: str) -> str:
        path = self.config.models / "blobs" / f"sha256-{protocol.checked_digest(digest)}"
        if not path.is_file():
            raise FileNotFoundError(f"no blob sha256-{digest} in {self.config.models}")
        return str(path)

    def _open_engine(self, request: protocol.LoadRequest) -> Engine:
        return Engine(
            self._blob(request.weights_digest),
            adapters=[self._blob(a) for a in request.adapters],
            n_parallel=self.config.num_parallel,
            ctx_per_seq=self.config.context_length,
            n_threads=self.threads,
            flash_attention=self.config.flash_attention,
            prefill_slice_ms=self.config.prefill_slice * 1000,
            cache_ram_mib=self.config.cache_ram,
        )

    def _open_embedder(self, engine: Engine) -> Embedder:
        """The model's embedding context, on its loaded weights (called on the engine's thread)."""
        return Embedder(engine.weights, ctx_len=engine.ctx_per_seq, n_threads=self.threads,
                        flash_attention=self.config.flash_attention)

    async def _make_room(self) -> bool:
        """Evict idle models, least recently used first, until one more fits."""
        while len(self.models) + len(self._loading) >= self.config.max_loaded_models:
            idle = [h for h in self.models.values() if not h.busy]
            if not idle:
                return False
            await self._unload(min(idle, key=lambda h: h.idle_since))
            await self._publish_holdings()
        return True

    async def _stop_being_reached(self, host: HostedModel) -> None:
        """No new job for this model comes here: out of its holders (no gateway routes here, and
        a job nobody else can take posts a load), and what was routed here goes to another worker."""
        await self._redis.zrem(protocol.holders_key(host.digest), self.id)
        await hand_back(self._redis, host.digest, self.id)

    async def _unload(self, host: HostedModel) -> None:
        self.models.pop(host.digest, None)
        await self._stop_being_reached(host)
        await self._unblock_claim()  # stop claiming its jobs
        await host.thread.stop()
        log.info("unloaded %s", host.name)

    async def _fail_waiting(self, digest: str, message: str) -> None:
        """A model that cannot load fails the jobs waiting for it, rather than stranding them."""
        stream = protocol.jobs_key(digest)
        await self._ensure_group(stream)
        while True:
            reply: Any = await self._redis.xreadgroup(protocol.WORKERS_GROUP, self.id, {stream: ">"}, count=100)
            if not reply:
                break
            for entry_id, fields in reply[0][1]:
                job = protocol.decode_job(fields[b"m"])
                running = RunningJob(job=job, entry_id=entry_id.decode(), stream=stream, attempt=job.attempt)
                self._emit_event(running, Error(attempt=job.attempt, seq=1, message=message, status=500))
                self._acks.append((stream, running.entry_id))
        await self._flush()

    # ---- events ------------------------------------------------------------------------

    @staticmethod
    def _load_ns(host: HostedModel, running: RunningJob) -> int:
        """The model's load time, for the jobs that waited for it to load."""
        return host.load_duration_ns if running.job.created <= host.ready_at else 0

    def _loaded(self, host: HostedModel, running: RunningJob) -> Done:
        """The answer to a job with nothing to generate: the model is loaded (Ollama's "load")."""
        return Done(attempt=running.attempt, seq=running.next_seq(), done_reason="load",
                    load_duration=self._load_ns(host, running))

    def _emit_event(self, running: RunningJob, event: protocol.Event) -> None:
        self._outbox.append((protocol.events_key(running.job.id), protocol.encode(event)))

    def _finish(self, host: HostedModel, running: RunningJob) -> None:
        host.running.pop(running.job.id, None)
        self._acks.append((running.stream, running.entry_id))
        self._free_changed.add(host.digest)
        if not host.busy:
            host.idle_since = time.monotonic()

    def _on_ended(self, digest: str, job_ids: Sequence[str]) -> None:
        """Called on the loop thread with the jobs whose final event the engine thread wrote."""
        host = self.models.get(digest)
        if host is None:
            return
        finished = [host.running[job_id] for job_id in job_ids if job_id in host.running]
        for running in finished:
            self._finish(host, running)
        if finished:  # jobs the shutdown already finished free nothing more
            self._outbox_ready.set()
            self._spawn(self._after_free(host))

    async def _after_free(self, host: HostedModel) -> None:
        if host.expired() and host.digest in self.models:
            await self._unload(host)
            await self._publish_holdings()
        await self._unblock_claim()

    async def _publish_loop(self) -> None:
        while True:
            await self._outbox_ready.wait()
            self._outbox_ready.clear()
            try:
                await self._flush()
            except RedisError:  # a Redis hiccup: what was not written waits for the next try
                log.exception("could not write events and acknowledgements; retrying")
                await asyncio.sleep(_FLUSH_RETRY_S)
                self._outbox_ready.set()

    async def _flush(self) -> None:
        if not self._outbox and not self._acks and not self._free_changed and not self._named:
            return
        outbox, self._outbox = self._outbox, []
        acks, self._acks = self._acks, []
        free = {d: self.models[d].free_slots for d in self._free_changed if d in self.models}
        self._free_changed.clear()
        named, self._named = self._named, []  # hints: lost with a failed write, no harm done
        ttl_due = self._ttl.due({key for key, _ in outbox})
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for key, data in outbox:
                    pipe.xadd(key, {"m": data}, maxlen=protocol.EVENTS_MAXLEN, approximate=True)
                for key in ttl_due:
                    pipe.pexpire(key, protocol.EVENTS_TTL_MS)
                for stream, entry_id in acks:
                    pipe.xack(stream, protocol.WORKERS_GROUP, entry_id)
                    pipe.xdel(stream, entry_id)
                for digest, slots in free.items():
                    pipe.hset(protocol.free_slots_key(digest), self.id, slots)
                for job in named:
                    base = protocol.prefix_key_base(job.digest)
                    for prefix in job.prefixes:
                        pipe.set(base + prefix, self.id, ex=protocol.PREFIX_TTL_S)
                await pipe.execute()
        except RedisError:
            # Written again next time: an event twice is skipped by its reader; XACK and XDEL
            # of an entry already gone do nothing.
            self._outbox[:0] = outbox
            self._acks[:0] = acks
            self._ttl.forget(ttl_due)
            self._free_changed.update(free)
            raise

    # ---- cancellation and heartbeat ----------------------------------------------------

    async def _listen_loop(self) -> None:
        """Cancellations, and orders for all workers or for this one; subscribed again after
        Redis comes back."""
        while True:
            try:
                await self._listen()
            except RETRIED:
                await self._redis_down("listening for cancellations")

    async def _listen(self) -> None:
        pubsub = self._redis.pubsub()
        await pubsub.subscribe(protocol.CANCELS_CHANNEL, protocol.CONTROL_CHANNEL, protocol.control_channel(self.id))
        try:
            async for message in pubsub.listen():
                if message.get("type") != "message":
                    continue
                if message["channel"] == protocol.CANCELS_CHANNEL.encode():
                    self._cancel(message["data"].decode())
                else:
                    await self._obey(protocol.decode_control(message["data"]))
        finally:
            await pubsub.aclose()  # type: ignore[no-untyped-call]

    def _cancel(self, job_id: str) -> None:
        for host in self.models.values():
            if job_id in host.running:
                host.thread.cancel(job_id)

    async def _obey(self, order: protocol.Control) -> None:
        if order.kind == "load":
            if self.draining:
                return
            self._start_load(None, protocol.LoadRequest(digest=order.digest, model=order.model, weights=order.weights,
                                                        adapters=order.adapters))
            return
        host = self.models.get(order.digest)
        if host is not None:  # unload: now if idle, else as soon as it is
            host.keep_alive = 0.0
            if host.expired():
                await self._unload(host)
                await self._publish_holdings()

    async def _publish_holdings(self) -> None:
        now = time.time()
        state = WorkerState(
            id=self.id,
            host=socket.gethostname(),
            pid=os.getpid(),
            max_loaded_models=self.config.max_loaded_models,
            loaded=[h.describe() for h in self.models.values()],
            beat=now,
            threads=self.threads,
            draining=self.draining,
        )
        until_ms = int((now + protocol.HEARTBEAT_TTL_S) * 1000)
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.set(protocol.worker_key(self.id), protocol.encode(state), px=protocol.HEARTBEAT_TTL_S * 1000)
            pipe.sadd(protocol.WORKERS_SET, self.id)
            for host in self.models.values() if not self.draining else ():
                pipe.zadd(protocol.holders_key(host.digest), {self.id: until_ms})
                pipe.hset(protocol.free_slots_key(host.digest), self.id, host.free_slots)  # undoes gateways' guesses
                pipe.sadd(protocol.personal_set_key(host.digest), self.id)  # again after a Redis restart
            await pipe.execute()

    async def _heartbeat_loop(self) -> None:
        janitor = Janitor(self._redis, self.id, load_timeout_s=self.config.load_timeout)
        beats = 0
        while True:
            try:
                for host in list(self.models.values()):
                    if host.expired():
                        await self._unload(host)
                await self._publish_holdings()
                await self._drop_orphaned_jobs()
                if not self.draining:  # another worker takes the janitor's lock when it lapses
                    await janitor.round()
                if beats % _CROWDING_CHECK_BEATS == _FIRST_CROWDING_CHECK:
                    await self._warn_if_crowded()
            except RETRIED:  # Redis restarting: the next beat registers this worker again
                await self._redis_down("heartbeat")
            except Exception:
                log.exception("janitor round failed")
            beats += 1
            await asyncio.sleep(protocol.HEARTBEAT_INTERVAL_S)

    async def _drop_orphaned_jobs(self) -> None:
        """Cancel the running jobs whose gateway is gone (killed, crashed): nobody would read
        their answers, and an answer without a limit runs for ten contexts. A gateway that
        stops properly cancels its jobs itself."""
        running = [(host, job_id, r.job.gateway) for host in self.models.values()
                   for job_id, r in host.running.items() if r.job.gateway]
        gateways = sorted({gateway for _, _, gateway in running})
        alive: list[Any] = await self._redis.mget([protocol.gateway_key(g) for g in gateways]) if gateways else []
        now = time.monotonic()
        self._gateway_missing = missing = {
            g: self._gateway_missing.get(g, now) for g, beat in zip(gateways, alive, strict=True) if beat is None}
        gone = {g for g, since in missing.items() if now - since >= _GATEWAY_GRACE_S}
        for host, job_id, gateway in running:
            if gateway in gone:
                log.warning("job %s: its gateway %s is gone; cancelling it", job_id, gateway)
                host.thread.cancel(job_id)

    async def _warn_if_crowded(self) -> None:
        """Say so when the workers on this machine run more decode threads than it has cores:
        their OpenMP threads spin against each other, and decoding at once they run several
        times slower than one of them alone."""
        here = socket.gethostname()
        neighbours = {i: w for i, w in (await live_workers(self._redis)).items() if w.host == here}
        threads = sum(w.threads for w in neighbours.values())
        cores = usable_cores()
        crowded = frozenset(neighbours) if len(neighbours) > 1 and threads > cores else frozenset()
        if crowded and crowded != self._crowded_warned:
            log.warning("%d workers on this host run %d decode threads on %d cores: decoding together they "
                        "slow each other down several times; give each HERD_NUM_THREAD = cores / workers",
                        len(neighbours), threads, cores)
        self._crowded_warned = crowded
