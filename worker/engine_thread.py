"""Runs one Engine on its own thread, so decoding never waits for Redis and Redis never
waits for decoding (llama_decode releases the GIL).

The asyncio side sends commands through `submit`/`cancel`; the thread hands back each
step's events in one batch through `on_events`, called on the event loop's thread.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import queue
import threading
from collections.abc import Callable, Sequence

from herd.protocol import SamplingOptions
from worker.engine import Engine, EngineEvent, Failed

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Cancelled:
    """The engine dropped this request at the runner's asking; its slot is free."""

    request_id: str


ThreadEvent = EngineEvent | Cancelled


@dataclasses.dataclass(frozen=True)
class _Add:
    request_id: str
    prompt: str
    options: SamplingOptions


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
    ) -> None:
        self.engine = engine
        self._loop = loop
        self._on_events = on_events
        self._inbox: queue.SimpleQueue[_Add | _Cancel | _Stop] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def submit(self, request_id: str, prompt: str, options: SamplingOptions) -> None:
        self._inbox.put(_Add(request_id, prompt, options))

    def cancel(self, request_id: str) -> None:
        self._inbox.put(_Cancel(request_id))

    async def stop(self) -> None:
        """Ends the thread after its current step and frees the model."""
        self._inbox.put(_Stop())
        await asyncio.to_thread(self._thread.join)

    def _post(self, events: Sequence[ThreadEvent]) -> None:
        if events:
            self._loop.call_soon_threadsafe(self._on_events, events)

    def _handle(self, command: _Add | _Cancel) -> list[ThreadEvent]:
        if isinstance(command, _Add):
            try:
                self.engine.add(command.request_id, command.prompt, command.options)
            except Exception as exc:  # a bad prompt must not take the thread down
                log.exception("could not start %s", command.request_id)
                return [Failed(command.request_id, f"could not start generation: {exc}", 500)]
            return []
        self.engine.cancel(command.request_id)
        return [Cancelled(command.request_id)]

    def _run(self) -> None:
        try:
            while True:
                events: list[ThreadEvent] = []
                # Idle: sleep on the inbox. Busy: take what arrived, then decode one step.
                block = not self.engine.has_work
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
                    try:
                        events.extend(self.engine.step())
                    except Exception as exc:
                        log.exception("decode step failed")
                        for request_id in list(self.engine.active_ids):
                            self.engine.cancel(request_id)
                            events.append(Failed(request_id, f"decoding failed: {exc}", 500))
                self._post(events)
        finally:
            self.engine.close()
