"""Herd's own `Engine` (worker/engine.py) driven in this process, without Redis, the worker's
event loop, the gateway or HTTP.

Not a row of the table: a diagnostic that splits Herd's distance from the raw loop into the
engine's share (its Python around each llama_decode) and the transport's share (everything
between the engine and the client).
"""

from __future__ import annotations

import itertools
import time

from bench.raw_decode import StreamRun
from herd.protocol import SamplingOptions
from worker.engine import Engine, Failed, Finished, TextOut


class DirectEngine:
    def __init__(self, path: str, *, n_parallel: int, ctx_per_seq: int, n_threads: int) -> None:
        self.engine = Engine(path, n_parallel=n_parallel, ctx_per_seq=ctx_per_seq, n_threads=n_threads)
        self._ids = itertools.count()

    def stream(self, prompt: str, n_predict: int) -> StreamRun:
        """One greedy request, stepped until it finishes; times from its first text to its last.
        StreamRun.tokens holds placeholders: only their number (the engine's eval_count) counts."""
        request_id = f"bench-{next(self._ids)}"
        start = time.perf_counter_ns()
        self.engine.add(request_id, prompt, SamplingOptions(temperature=0.0, num_predict=n_predict))
        t_first = t_last = 0
        while True:
            events = self.engine.step()
            now = time.perf_counter_ns()
            for event in events:
                if isinstance(event, TextOut):
                    t_first = t_first or now
                    t_last = now
                elif isinstance(event, Finished):
                    return StreamRun([0] * event.eval_count, t_first - start, t_last - t_first)
                elif isinstance(event, Failed):
                    raise RuntimeError(event.message)

    def close(self) -> None:
        self.engine.close()
