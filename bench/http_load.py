"""HTTP clients for the benchmarks: one timed stream, one timed first token, and closed-loop
load (N clients, each sending its next request as soon as the last one is answered).

Everything is httpx on asyncio. Times are `time.perf_counter_ns()` on the client.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx


def client(n_connections: int = 64) -> httpx.AsyncClient:
    """A keep-alive client with room for every concurrent request of a run."""
    limits = httpx.Limits(max_connections=n_connections, max_keepalive_connections=n_connections)
    return httpx.AsyncClient(limits=limits, timeout=httpx.Timeout(300.0))


@dataclass(frozen=True)
class TimedLine:
    """One NDJSON line of a streamed answer and when its last byte arrived."""

    at_ns: int
    message: dict[str, Any]


async def ollama_lines(http: httpx.AsyncClient, base_url: str, body: dict[str, Any]) -> tuple[int, list[TimedLine]]:
    """A streamed /api/generate: (when the request was sent, every line with its arrival time).

    While the answer streams, the client only timestamps raw chunks; lines are split and
    parsed afterwards, so the client's own CPU use (which competes with the server's on a
    small machine) stays as low as httpx allows."""
    chunks: list[tuple[int, bytes]] = []
    start = time.perf_counter_ns()
    async with http.stream("POST", base_url + "/api/generate", json={**body, "stream": True}) as response:
        response.raise_for_status()
        async for chunk in response.aiter_raw():
            chunks.append((time.perf_counter_ns(), chunk))
    lines: list[TimedLine] = []
    pending = b""
    for at_ns, chunk in chunks:
        *complete, pending = (pending + chunk).split(b"\n")
        lines.extend(TimedLine(at_ns, json.loads(line)) for line in complete if line.strip())
    if pending.strip():
        lines.append(TimedLine(chunks[-1][0], json.loads(pending)))
    return start, lines


@dataclass(frozen=True)
class StreamTiming:
    prompt_eval_count: int  # prompt tokens, from the final line
    eval_count: int  # tokens the server generated, from its final line
    first_to_last_ns: int  # first text line to the last text line, on the client

    @property
    def decode_tok_s(self) -> float:
        return (self.eval_count - 1) / (self.first_to_last_ns / 1e9)


async def ollama_stream(http: httpx.AsyncClient, base_url: str, body: dict[str, Any]) -> StreamTiming:
    """A streamed /api/generate: when the first and the last piece of text arrived."""
    _, lines = await ollama_lines(http, base_url, body)
    texts = [line.at_ns for line in lines if line.message.get("response")]
    final = lines[-1].message
    if not final.get("done") or len(texts) < 2:
        raise RuntimeError(f"the stream ended badly: {final}")
    return StreamTiming(int(final["prompt_eval_count"]), int(final["eval_count"]), texts[-1] - texts[0])


@dataclass(frozen=True)
class FirstToken:
    client_ns: int  # request sent to the first text line received
    total_ns: int  # the server's total_duration: job admitted to answer finished
    prompt_eval_ns: int  # the server's prompt_eval_duration: the engine's admission to end of prefill


async def ollama_first_token(http: httpx.AsyncClient, base_url: str, body: dict[str, Any]) -> FirstToken:
    """Time to first token of a streamed /api/generate, with the server's own durations."""
    start, lines = await ollama_lines(http, base_url, body)
    first = next((line.at_ns for line in lines if line.message.get("response")), None)
    final = lines[-1].message
    if first is None or not final.get("done"):
        raise RuntimeError(f"the stream ended without text: {final}")
    return FirstToken(first - start, int(final["total_duration"]), int(final["prompt_eval_duration"]))


async def ollama_generate(http: httpx.AsyncClient, base_url: str, body: dict[str, Any]) -> int:
    """A non-streamed /api/generate; returns the tokens generated."""
    response = await http.post(base_url + "/api/generate", json={**body, "stream": False})
    response.raise_for_status()
    return int(response.json()["eval_count"])


async def openai_completion(http: httpx.AsyncClient, base_url: str, body: dict[str, Any]) -> int:
    """A non-streamed /v1/completions; returns usage.completion_tokens."""
    response = await http.post(base_url + "/v1/completions", json={**body, "stream": False})
    response.raise_for_status()
    return int(response.json()["usage"]["completion_tokens"])


@dataclass(frozen=True)
class LoadResult:
    requests: int
    tokens: int
    elapsed_s: float

    @property
    def tok_s(self) -> float:
        return self.tokens / self.elapsed_s

    @property
    def req_s(self) -> float:
        return self.requests / self.elapsed_s


async def closed_loop(n_clients: int, request: Callable[[], Awaitable[int]], *, duration_s: float,
                      min_requests: int = 1) -> LoadResult:
    """n_clients loops, each sending `request()` back to back; a loop starts no new request
    after duration_s (once it has sent min_requests). The run ends when the last answer
    arrives, and every answered request counts: throughput = tokens / that span."""
    counts = [0] * n_clients
    tokens = [0] * n_clients
    start = time.perf_counter()

    async def loop(i: int) -> None:
        while counts[i] < min_requests or time.perf_counter() - start < duration_s:
            tokens[i] += await request()
            counts[i] += 1

    await asyncio.gather(*(loop(i) for i in range(n_clients)))
    elapsed = time.perf_counter() - start
    return LoadResult(sum(counts), sum(tokens), elapsed)
