"""Runs one Engine on its own thread, so decoding never waits for Redis and Redis never
waits for decoding (llama_decode releases the GIL).

The asyncio side sends commands through `submit`/`embed`/`cancel`; the thread hands back
each step's events in one batch through `on_events`, called on the event loop's thread.
Embed jobs run on the same thread, on an Embedder made at the first one: each loop turn is
one engine decode step and one embedder step, so neither context is used from two threads.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import queue
import threading
from collections.abc import Callable, Mapping, Sequence

from herd.protocol import Job, OutputFormat, SamplingOptions
from worker.embedder import Embedder, EmbedEvent
from worker.engine import Engine, EngineEvent, Failed

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Cancelled:
    """The engine dropped this request at the runner's asking; its slot is free."""

    request_id: str


ThreadEvent = EngineEvent | EmbedEvent | Cancelled


@dataclasses.dataclass(frozen=True)
class _Add:
    request_id: str
    prompt: str
    options: SamplingOptions
    output: OutputFormat | None = None
    logprobs: int | None = None
    logit_bias: Mapping[int, float] | None = None
    truncate: bool = True
    shift: bool = True


@dataclasses.dataclass(frozen=True)
class _Embed:
    request_id: str
    job: Job


@dataclasses.dataclass(frozen=True)
class _Cancel:
    request_id: str


class _Stop:
    pass


class EngineThread:
    def __init__(
        self,
        engine: Engine,
        loop: asyncio.AbstractEventLoop,
        on_events: Callable[[Sequence[ThreadEvent]], None],
        *,
        name: str,
        make_embedder: Callable[[], Embedder] | None = None,
    ) -> None:
        self.engine = engine
        self._loop = loop
        self._on_events = on_events
        self._make_embedder = make_embedder or (lambda: Embedder(engine.weights, ctx_len=engine.ctx_per_seq))
        self._embedder: Embedder | None = None  # made on the engine's thread at the first embed job
        self._inbox: queue.SimpleQueue[_Add | _Embed | _Cancel | _Stop] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def submit(self, request_id: str, prompt: str, options: SamplingOptions, *, output: OutputFormat | None = None,
               logprobs: int | None = None, logit_bias: Mapping[int, float] | None = None, truncate: bool = True,
               shift: bool = True) -> None:
        """Start a generation; the keywords are `Engine.add`'s."""
        self._inbox.put(_Add(request_id, prompt, options, output, logprobs, logit_bias, truncate, shift))

    def embed(self, job: Job) -> None:
        """Run an embed job (`job.embed` holds its inputs); it ends with one Embedded or Failed."""
        self._inbox.put(_Embed(job.id, job))

    def cancel(self, request_id: str) -> None:
        self._inbox.put(_Cancel(request_id))

    async def stop(self) -> None:
        """Ends the thread after its current step and frees the model."""
        self._inbox.put(_Stop())
        await asyncio.to_thread(self._thread.join)

    def _post(self, events: Sequence[ThreadEvent]) -> None:
        if events:
            self._loop.call_soon_threadsafe(self._on_events, events)

    @property
    def _has_work(self) -> bool:
        return self.engine.has_work or (self._embedder is not None and self._embedder.has_work)

    def _handle(self, command: _Add | _Embed | _Cancel) -> list[ThreadEvent]:
        if isinstance(command, _Cancel):
            self.engine.cancel(command.request_id)
            if self._embedder is not None:
                self._embedder.cancel(command.request_id)
            return [Cancelled(command.request_id)]
        try:
            if isinstance(command, _Add):
                self.engine.add(command.request_id, command.prompt, command.options, output=command.output,
                                logprobs=command.logprobs, logit_bias=command.logit_bias,
                                truncate=command.truncate, shift=command.shift)
            else:
                if self._embedder is None:
                    self._embedder = self._make_embedder()
                job = command.job
                self._embedder.add(job.id, job.embed or [], truncate=job.truncate, num_ctx=job.options.num_ctx,
                                   dimensions=job.dimensions)
        except Exception as exc:  # a bad prompt must not take the thread down
            log.exception("could not start %s", command.request_id)
            what = "generation" if isinstance(command, _Add) else "embedding"
            return [Failed(command.request_id, f"could not start {what}: {exc}", 500)]
        return []

    @staticmethod
    def _step(part: Engine | Embedder) -> list[ThreadEvent]:
        """One decode step of the engine or the embedder; if it fails, so do its jobs."""
        try:
            return list(part.step())
        except Exception as exc:
            log.exception("decode step failed")
            failed: list[ThreadEvent] = []
            for request_id in part.active_ids:
                part.cancel(request_id)
                failed.append(Failed(request_id, f"decoding failed: {exc}", 500))
            return failed

    def _run(self) -> None:
        try:
            while True:
                events: list[ThreadEvent] = []
                # Idle: sleep on the inbox. Busy: take what arrived, then decode one step.
                block = not self._has_work
                while True:
                    try:
                        command = self._inbox.get(block=block)
                    except queue.Empty:
                        break
                    block = False
                    if isinstance(command, _Stop):
                        self._post(events)
                        return
                    events.extend(self._handle(command))
                if self.engine.has_work:
                    events.extend(self._step(self.engine))
                if self._embedder is not None and self._embedder.has_work:
                    events.extend(self._step(self._embedder))
                self._post(events)
        finally:
            if self._embedder is not None:
                self._embedder.close()
            self.engine.close()
