"""What a job's client sees, written from the engine thread: turns what the engine and the
embedder report into the job's protocol events (Token, Done, Error, Embeddings) and appends
them to its events stream.

The runner opens a job here before handing it to the engine thread; from then on only the
engine thread writes that job's events (so they stay in order on one connection), and the
runner hears only which jobs ended, to acknowledge them and free their slots.
"""

from __future__ import annotations

import dataclasses
import threading

from herd import protocol
from herd.protocol import Done, Embeddings, Error, Token
from worker.embedder import Embedded, EmbedEvent
from worker.engine import EngineEvent, Failed, Finished, TextOut
from worker.event_writer import EventWriter


@dataclasses.dataclass(frozen=True)
class Cancelled:
    """The engine dropped this request at the runner's asking; its slot is free."""

    request_id: str


ThreadEvent = EngineEvent | EmbedEvent | Cancelled


@dataclasses.dataclass
class _JobStream:
    key: str
    attempt: int
    load_duration_ns: int  # reported in the final event
    seq: int = 0

    def next_seq(self) -> int:
        self.seq += 1
        return self.seq


class JobEvents:
    """The open jobs of one engine thread and the writer of their events."""

    def __init__(self, writer: EventWriter) -> None:
        self._writer = writer
        self._open: dict[str, _JobStream] = {}
        self._lock = threading.Lock()  # open() runs on the event loop's thread

    def open(self, job_id: str, *, attempt: int, load_duration_ns: int) -> None:
        """Called before the job is submitted: its events go to its stream from now on."""
        with self._lock:
            self._open[job_id] = _JobStream(protocol.events_key(job_id), attempt, load_duration_ns)

    def publish(self, events: list[ThreadEvent]) -> list[str]:
        """Write one step's events; returns the jobs that ended with them."""
        entries: list[tuple[str, bytes]] = []
        ended: list[str] = []
        with self._lock:
            for event in events:
                stream = self._open.get(event.request_id)
                if stream is None:  # e.g. a cancel that crossed the job's end
                    continue
                entries.append((stream.key, protocol.encode(_protocol_event(event, stream))))
                if not isinstance(event, TextOut):
                    del self._open[event.request_id]
                    ended.append(event.request_id)
        self._writer.write(entries)
        return ended

    def fail_all(self, message: str, status: int) -> list[str]:
        """End every open job with an error (the engine is going away)."""
        with self._lock:
            ids = list(self._open)
        return self.publish([Failed(job_id, message, status) for job_id in ids])

    def settle(self) -> None:
        self._writer.settle()

    def close(self) -> None:
        self._writer.close()


def _protocol_event(event: ThreadEvent, stream: _JobStream) -> protocol.Event:
    seq = stream.next_seq()
    if isinstance(event, TextOut):
        return Token(attempt=stream.attempt, seq=seq, text=event.text, logprobs=event.logprobs)
    if isinstance(event, Finished):
        return Done(attempt=stream.attempt, seq=seq, done_reason=event.done_reason,
                    prompt_eval_count=event.prompt_eval_count, prompt_cached_count=event.prompt_cached_count,
                    prompt_eval_duration=event.prompt_eval_duration_ns, eval_count=event.eval_count,
                    eval_duration=event.eval_duration_ns, load_duration=stream.load_duration_ns)
    if isinstance(event, Embedded):
        return Embeddings(attempt=stream.attempt, seq=seq, vectors=event.vectors,
                          prompt_eval_count=event.prompt_eval_count,
                          prompt_eval_duration=event.prompt_eval_duration_ns, load_duration=stream.load_duration_ns)
    if isinstance(event, Failed):
        return Error(attempt=stream.attempt, seq=seq, message=event.message, status=event.status)
    return Error(attempt=stream.attempt, seq=seq, message="request canceled", status=499)
