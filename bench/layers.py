"""Where single-stream speed goes, layer by layer (a diagnostic, not a row of the table).

    .venv/bin/python -m bench.layers [--rounds 4] [--tokens 256]

Each round runs one greedy generation four ways, in turn, on one stack: a job put straight
into Redis with nobody reading its events until it is done (the worker alone), the same with
one reader XREADing every event (the gateway's reader, without the gateway), through HTTP
with an httpx client (the whole path), and Herd's Engine in this process (no Redis at all).
The worker's own timing of the decode (eval_count / eval_duration) is compared, so each
layer's cost shows as the ratio to the engine in-process.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

from bench.engine_direct import DirectEngine
from bench.http_load import client, ollama_lines
from gateway.jobs import JobQueue, new_job_id
from herd import protocol
from herd.demo import DEMO_NAME, demo_gguf
from herd.protocol import Done, Job, SamplingOptions
from herd.store.store import ModelStore
from tests.stack import running_stack

PROMPT = "1, 2, 3, 4, 5, 6,"  # raw: greedy counting never ends early
LAYERS = ("worker alone", "+ one reader", "+ gateway and HTTP", "engine in-process")


async def _through_redis(queue: JobQueue, redis: aioredis.Redis, digest: str, tokens: int, *, read: bool) -> Done:
    job = Job(id=new_job_id(), model=DEMO_NAME, digest=digest, prompt=PROMPT,
              options=SamplingOptions(temperature=0.0, num_predict=tokens), created=time.time())
    await queue.submit(job)
    if read:
        async for event in queue.events(job.id):
            if isinstance(event, Done):
                return event
        raise RuntimeError("the events ended without Done")
    while True:  # nobody reads while it decodes; look for the end now and then
        await asyncio.sleep(0.3)
        entries: Any = await redis.xrange(protocol.events_key(job.id))
        for _, fields in entries:
            event = protocol.decode_event(fields[b"m"])
            if isinstance(event, Done):
                return event


async def _through_http(base_url: str, tokens: int) -> float:
    async with client() as http:
        _, lines = await ollama_lines(http, base_url, {"model": DEMO_NAME, "prompt": PROMPT, "raw": True,
                                                       "options": {"temperature": 0, "num_predict": tokens}})
    final = lines[-1].message
    return float(final["eval_count"]) / (float(final["eval_duration"]) / 1e9)


async def _measure(base_url: str, redis_url: str, digest: str, engine: DirectEngine, rounds: int,
                   tokens: int) -> None:
    redis = aioredis.Redis.from_url(redis_url)
    queue = JobQueue(redis, max_queue=512, load_timeout_s=60, queue_timeout_s=60)
    await queue.beat()  # this process is a gateway too: workers drop the jobs of one without a heartbeat
    beating = asyncio.create_task(queue.keep_beating())
    await _through_http(base_url, 8)  # loads the model
    rates: dict[str, list[float]] = {layer: [] for layer in LAYERS}
    for _ in range(rounds):
        for read, layer in ((False, LAYERS[0]), (True, LAYERS[1])):
            done = await _through_redis(queue, redis, digest, tokens, read=read)
            rates[layer].append(done.eval_count / (done.eval_duration / 1e9))
        rates[LAYERS[2]].append(await _through_http(base_url, tokens))
        run = engine.stream(PROMPT, tokens)
        rates[LAYERS[3]].append(run.decode_tok_s)
    beating.cancel()
    await redis.aclose()
    base = statistics.median(rates[LAYERS[3]])
    print(f"| layer | tok/s (median of {rounds}) | vs engine in-process |\n|---|---|---|")
    for layer in LAYERS:
        median = statistics.median(rates[layer])
        print(f"| {layer} | {median:.1f} ({', '.join(f'{r:.1f}' for r in rates[layer])}) | {median / base:.3f}x |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--tokens", type=int, default=256)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as root, \
            running_stack(Path(root), num_parallel=8, num_thread=args.threads) as stack:
        record = ModelStore(stack.models).get(DEMO_NAME)
        assert record is not None
        engine = DirectEngine(str(demo_gguf()), n_parallel=8, ctx_per_seq=4096, n_threads=args.threads)
        try:
            asyncio.run(_measure(stack.base_url, stack.redis_url, record.load_digest, engine, args.rounds,
                                 args.tokens))
        finally:
            engine.close()


if __name__ == "__main__":
    main()
