"""One model a worker holds: its engine thread, its running jobs and its keep-alive clock."""

from __future__ import annotations

import dataclasses
import math
import time

from herd.protocol import Job, LoadedModel
from worker.engine_thread import EngineThread


@dataclasses.dataclass
class RunningJob:
    job: Job
    entry_id: str  # in `stream`, acknowledged when the job ends
    stream: str  # the model's shared job stream or this worker's own one
    attempt: int
    seq: int = 0
    started_ns: int = dataclasses.field(default_factory=time.perf_counter_ns)

    def next_seq(self) -> int:
        self.seq += 1
        return self.seq


@dataclasses.dataclass
class HostedModel:
    digest: str
    name: str
    thread: EngineThread
    size: int
    context_length: int
    parallel: int
    keep_alive: float  # seconds; inf = forever
    ready_at: float = dataclasses.field(default_factory=time.time)
    load_duration_ns: int = 0
    running: dict[str, RunningJob] = dataclasses.field(default_factory=dict)
    idle_since: float = dataclasses.field(default_factory=time.monotonic)

    @property
    def free_slots(self) -> int:
        return self.parallel - len(self.running)

    @property
    def busy(self) -> bool:
        return bool(self.running)

    def expires_at(self) -> float | None:
        """Unix time when this model unloads if nothing else comes; None: never."""
        if math.isinf(self.keep_alive):
            return None
        if self.busy:
            return time.time() + self.keep_alive
        return time.time() + max(0.0, self.keep_alive - (time.monotonic() - self.idle_since))

    def expired(self) -> bool:
        if self.busy or math.isinf(self.keep_alive):
            return False
        return time.monotonic() - self.idle_since >= self.keep_alive

    def describe(self) -> LoadedModel:
        return LoadedModel(
            digest=self.digest,
            model=self.name,
            size=self.size,
            context_length=self.context_length,
            parallel=self.parallel,
            busy=len(self.running),
            expires_at=self.expires_at(),
            saved_prompt_bytes=self.thread.engine.saved_prompt_bytes,
        )
