"""Runs one Engine on its own thread, so decoding never waits for Redis and Redis never
waits for decoding (llama_decode releases the GIL).

The asyncio side sends commands through `submit`/`embed`/`cancel`. The thread writes each
step's events to the jobs' streams itself (`JobEvents`), and tells the event loop only which
jobs ended (`on_ended`, called on the loop's thread): waking the loop and handing it the GIL
for every token cost the decode steps time on a small machine.
Embed jobs run on the same thread, on an Embedder made at the first one: each loop turn is
one engine decode step and one embedder step, so neither context is used from two threads.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import queue
import threading
from collections.abc import Callable, Sequence

from herd.protocol import Job
from worker.embedder import Embedder
from worker.engine import Engine, Failed
from worker.job_events import Cancelled, JobEvents, ThreadEvent

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class _Start:
    job: Job  # a generation when it has a prompt, else an embedding


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
        job_events: JobEvents,
        on_ended: Callable[[Sequence[str]], None],
        *,
        name: str,
        make_embedder: Callable[[], Embedder] | None = None,
    ) -> None:
        self.engine = engine
        self._loop = loop
        self.job_events = job_events
        self._on_ended = on_ended
        self._make_embedder = make_embedder or (lambda: Embedder(engine.weights, ctx_len=engine.ctx_per_seq))
        self._embedder: Embedder | None = None  # made on the engine's thread at the first embed job
        self._inbox: queue.SimpleQueue[_Start | _Cancel | _Stop] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def start(self, job: Job, *, attempt: int, load_duration_ns: int) -> None:
        """Run a generation job (it has a prompt) or an embed job; its events go to its stream
        as this attempt, and `on_ended` hears when it ends."""
        self.job_events.open(job.id, attempt=attempt, load_duration_ns=load_duration_ns)
        self._inbox.put(_Start(job))

    def cancel(self, request_id: str) -> None:
        self._inbox.put(_Cancel(request_id))

    async def stop(self) -> None:
        """Ends the thread after its current step and frees the model; jobs still running
        end with an error."""
        self._inbox.put(_Stop())
        await asyncio.to_thread(self._thread.join)

    def _publish(self, events: list[ThreadEvent]) -> None:
        self._post_ended(self.job_events.publish(events))

    def _post_ended(self, ended: list[str]) -> None:
        if ended:
            self._loop.call_soon_threadsafe(self._on_ended, ended)

    @property
    def _has_work(self) -> bool:
        return self.engine.has_work or (self._embedder is not None and self._embedder.has_work)

    def _handle(self, command: _Start | _Cancel) -> list[ThreadEvent]:
        if isinstance(command, _Cancel):
            self.engine.cancel(command.request_id)
            if self._embedder is not None:
                self._embedder.cancel(command.request_id)
            return [Cancelled(command.request_id)]
        job = command.job
        try:
            if job.prompt is not None:
                self.engine.add(job.id, job.prompt, job.options, output=job.format, logprobs=job.logprobs,
                                logit_bias=job.logit_bias, truncate=job.truncate, shift=job.shift)
            else:
                if self._embedder is None:
                    self._embedder = self._make_embedder()
                self._embedder.add(job.id, job.embed or [], truncate=job.truncate, num_ctx=job.options.num_ctx,
                                   dimensions=job.dimensions)
        except Exception as exc:  # a bad prompt must not take the thread down
            log.exception("could not start %s", job.id)
            what = "generation" if job.prompt is not None else "embedding"
            return [Failed(job.id, f"could not start {what}: {exc}", 500)]
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
                if block:
                    self.job_events.settle()
                while True:
                    try:
                        command = self._inbox.get(block=block)
                    except queue.Empty:
                        break
                    block = False
                    if isinstance(command, _Stop):
                        self._publish(events)
                        self._post_ended(self.job_events.fail_all("the worker stopped", 503))
                        return
                    events.extend(self._handle(command))
                if self.engine.has_work:
                    events.extend(self._step(self.engine))
                if self._embedder is not None and self._embedder.has_work:
                    events.extend(self._step(self._embedder))
                self._publish(events)
        finally:
            if self._embedder is not None:
                self._embedder.close()
            self.engine.close()
            self.job_events.close()
