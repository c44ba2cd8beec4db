"""Run one job for one HTTP request: admit it, wait for its first event while watching the
client, then hand the rest to the dialect's writer. Both API dialects go through here.

A job whose client goes away is cancelled, whether it is still queued, processing its
prompt or decoding; a job that fails before its first token becomes a normal HTTP error.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

from litestar import Request
from litestar.types import Receive

from gateway import metrics
from gateway.clients import client_of
from gateway.errors import ApiError, client_full, queue_full
from gateway.jobs import ClientFull, JobQueue, QueueFull
from herd.protocol import Done, Embeddings, Error, Event, Job, Token, TokenLogprob

T = TypeVar("T")

TextEvent = Token | Done | Error  # what a generation job's events can be


class ClientGone(Exception):
    """The client disconnected; its job was cancelled."""


@dataclasses.dataclass
class Outcome:
    """What a finished job produced, for the non-streamed answers."""

    text: str
    done: Done
    logprobs: list[TokenLogprob] = dataclasses.field(default_factory=list)  # when the job asked for them


async def _until_disconnect(receive: Receive) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return


class Generation:
    """The events of one admitted job, with cancellation if they are abandoned."""

    def __init__(self, queue: JobQueue, job: Job) -> None:
        self.queue = queue
        self.job = job
        self.started = time.perf_counter_ns()
        self._events: AsyncGenerator[Event, None] = queue.events(job.id)
        self._finished = False
        self._attempt = 0
        self._shown = False  # whether any text went out to the client
        self._restarted = False

    async def watch(self, receive: Receive, work: Awaitable[T]) -> T:
        """`work`, unless the client disconnects first: then cancel the job, raise ClientGone."""
        work_task = asyncio.ensure_future(work)
        gone_task = asyncio.ensure_future(_until_disconnect(receive))
        try:
            await asyncio.wait({work_task, gone_task}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            gone_task.cancel()
        if work_task.done():
            return work_task.result()
        work_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await work_task  # the event reader must be stopped before it is closed
        await self.abandon()
        raise ClientGone()

    async def first(self) -> Event:
        """The first event; an Error as the first event becomes an HTTP error."""
        event = await self._next()
        if isinstance(event, Error):
            raise ApiError(event.status if 400 <= event.status < 600 else 500, event.message)
        return event

    async def _next(self) -> Event:
        event = await anext(self._events)
        if event.attempt != self._attempt:
            # Its worker died and the job was requeued: it starts over from the first token.
            if self._shown:  # never show text twice: end with an error instead
                await self.abandon()
                return Error(attempt=event.attempt, seq=0, status=503,
                             message="the worker serving this request stopped mid-answer; please retry")
            self._attempt, self._restarted = event.attempt, True
        if not isinstance(event, Token):
            self._finished = True
            await self.queue.finished(self.job.id)
            if isinstance(event, Done | Embeddings):
                metrics.job_finished(self.job.model, event)
        return event

    async def rest(self, first: Event) -> AsyncIterator[TextEvent]:
        """All events from `first` on, for a writer that sends them as they come.
        If the writer stops early (the client left), the job is cancelled."""
        try:
            event = first
            while True:
                self._shown = self._shown or isinstance(event, Token)
                yield _text_event(event)
                if self._finished:
                    return
                event = await self._next()
        finally:
            if not self._finished:
                await _shielded(self.abandon)

    async def collect(self, first: Event) -> Outcome:
        """The whole answer, for `stream: false`; nothing is shown before the end, so a
        requeued job simply starts over."""
        parts: list[str] = []
        logprobs: list[TokenLogprob] = []
        event = first
        while True:
            if self._restarted:
                parts.clear()
                logprobs.clear()
                self._restarted = False
            event = _text_event(event)
            if isinstance(event, Token):
                parts.append(event.text)
                logprobs.extend(event.logprobs or ())
            elif isinstance(event, Done):
                return Outcome("".join(parts), event, logprobs)
            else:
                raise ApiError(event.status if 400 <= event.status < 600 else 500, event.message)
            event = await self._next()

    async def abandon(self) -> None:
        self._finished = True
        await self.queue.cancel(self.job.id)
        await self._events.aclose()

    def total_duration(self) -> int:
        return time.perf_counter_ns() - self.started


def _text_event(event: Event) -> TextEvent:
    """Embeddings end an embed job; as the end of a generation they are a worker's error."""
    if isinstance(event, Embeddings):
        return Error(attempt=event.attempt, seq=event.seq, message="the worker answered with embeddings")
    return event


async def _shielded(action: Callable[[], Awaitable[Any]]) -> None:
    """Run cleanup even while the surrounding task is being cancelled (client gone)."""
    task = asyncio.ensure_future(action())
    _background.add(task)
    task.add_done_callback(_background.discard)
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.shield(task)


_background: set[asyncio.Task[Any]] = set()


async def start(queue: JobQueue, job: Job, request: Request[Any, Any, Any]) -> tuple[Generation, Event]:
    """Admit `job` for the client of `request` and wait (watching the client) for its first event."""
    try:
        routed = await queue.submit(job, client_of(request.scope))
    except QueueFull:
        metrics.job_rejected("queue_full")
        raise queue_full() from None
    except ClientFull:
        metrics.job_rejected("client_limit")
        raise client_full(queue.max_jobs_per_client) from None
    metrics.job_admitted(routed=routed)
    generation = Generation(queue, job)
    try:
        first = await generation.watch(request.receive, asyncio.wait_for(generation.first(), queue.queue_timeout_s))
    except TimeoutError:
        metrics.job_rejected("queue_timeout")
        await generation.abandon()  # dropped, never run later for nobody
        raise ApiError(503, f"no answer began within {queue.queue_timeout_s:g}s (HERD_QUEUE_TIMEOUT): "
                            "the server is busy; the request was dropped",
                       headers={"Retry-After": "5"}) from None
    if job.prompt is not None:  # a generation, not a load or an embedding
        metrics.first_event(job.model, (time.perf_counter_ns() - generation.started) / 1e9)
    return generation, first
