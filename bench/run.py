"""`python -m bench.run [--quick]`: Herd against its baselines, on this machine, in one run.

The machine is shared and noisy, so every figure is a ratio against a baseline measured in
the same run, the sides interleaved (A B, then B A) so that drift hits them alike:

1. single-stream decode through HTTP -> gateway -> Redis -> worker, against a raw
   llama_decode loop in this process;
2. aggregate throughput at 1, 2, 4 and 8 clients, against llama-cpp-python's own server
   under the same load and against raw batched llama_decode at the same batch size;
3. time to first token that the gateway and the queue add, over the in-process prefill;
4. how many 1-token jobs per second the gateway and Redis admit and dispatch, against the
   in-process rate of the same prefill.

Every sample is metered: CPU seconds of each of our processes and of the rest of the machine.
A sample during which other processes kept more than OTHERS_LIMIT cores busy is thrown away
and taken again once the machine is quiet (until the plan's retry deadline; after it, noisy
samples are kept and counted in the notes).

Prints notes (raw figures, CPU use per process) and a Markdown table for docs/performance.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import functools
import itertools
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import httpx
import llama_cpp
import redis

from bench.cpu import CpuMeter, share_of_wall, wait_for_quiet
from bench.engine_direct import DirectEngine
from bench.http_load import (
    FirstToken,
    LoadResult,
    client,
    closed_loop,
    ollama_first_token,
    ollama_generate,
    ollama_stream,
    openai_completion,
)
from bench.peer_server import running_peer
from bench.raw_decode import BatchRun, RawModel, StreamRun
from gateway.catalog import Catalog
from herd.demo import DEMO_NAME, demo_gguf
from herd.processes import EmbeddedRedis, free_port
from herd.store.store import ModelStore
from tests.stack import Stack, running_stack
from worker.llama_model import LoadedWeights
from worker.token_prefix import common_prefix

T = TypeVar("T")

N_PARALLEL = 8  # Herd's NUM_PARALLEL, and the raw context's sequences
THREADS = 2  # llama.cpp threads, everywhere (--threads changes it, for experiments)
CTX_PER_SEQ = 4096  # Herd's default CONTEXT_LENGTH; the same cells per sequence in the raw context
STORY = "Write a long story about a dragon who learns to bake bread."  # rows 1 and 2
STREAM_TOKENS = 128  # row 1
LOAD_TOKENS = 64  # row 2
CLIENT_COUNTS = (1, 2, 4, 8)  # row 2
TTFT_PROMPT = "The capital of France is"  # row 3 (raw mode: no template)
QUEUE_PROMPT = "Hi"  # row 4 (raw mode)
QUEUE_CLIENTS = 32  # row 4
STORY_VARIANTS = 400  # row 2: more than its requests, so none repeats
OTHERS_LIMIT = 0.1  # cores other processes may use during a sample before it is taken again

# Herd's workers (and the peer) reuse cells left by a request that started the same way (Herd
# also from host memory); the raw loop and the in-process sides decode every prompt whole. So
# that rows 2 and 3 compare the same work, each request starts with its own word, one that is a
# token of its own: two such prompts share no leading token (a templated one, only the head).


@functools.cache
def lead_words() -> list[str]:
    """Capitalized words of the demo model's vocabulary that tokenize to their own first token."""
    weights = LoadedWeights(str(demo_gguf()), vocab_only=True)
    try:
        words: list[str] = []
        for token in range(weights.n_vocab):
            word = weights.token_piece(token).decode("utf-8", "replace")
            if (len(word) >= 4 and word.isascii() and word.isalpha() and word.istitle()
                    and weights.tokenize(word + ": x", add_special=False)[0] == token):
                words.append(word)
        return words
    finally:
        weights.free()


def led(i: int, text: str) -> str:
    """`text` behind the i-th lead word: no two requests of a run share one."""
    words = lead_words()
    return f"{words[i % len(words)]}: {text}"


@dataclass(frozen=True)
class Plan:
    stream_pairs: int  # row 1: rounds of (Herd, raw, Herd's engine in-process)
    load_seconds: float  # row 2: how long one closed-loop run keeps sending
    load_rounds: int  # row 2: runs of each system per client count
    ttft_pairs: int  # row 3
    queue_seconds: float  # row 4: length of one run
    queue_rounds: int  # row 4: runs of each side
    retry_until_s: float  # noisy samples are taken again until this long after the start
    quiet_wait_s: float  # the longest wait for a quiet machine before a sample is taken again


FULL = Plan(stream_pairs=6, load_seconds=5.0, load_rounds=2, ttft_pairs=30, queue_seconds=4.0, queue_rounds=2,
            retry_until_s=420.0, quiet_wait_s=20.0)
QUICK = Plan(stream_pairs=2, load_seconds=2.0, load_rounds=1, ttft_pairs=8, queue_seconds=2.0, queue_rounds=1,
             retry_until_s=60.0, quiet_wait_s=5.0)


@dataclass(frozen=True)
class Row:
    measure: str
    herd: str
    baseline: str
    result: str
    target: str
    met: bool | None  # None: no target


@dataclass
class Usage:
    """CPU seconds per process summed over several samples, and their wall time."""

    cpu: dict[str, float] = field(default_factory=dict)
    wall_s: float = 0.0

    def add(self, used: dict[str, float], wall_s: float) -> None:
        self.wall_s += wall_s
        for name, seconds in used.items():
            self.cpu[name] = self.cpu.get(name, 0.0) + seconds

    def __str__(self) -> str:
        return share_of_wall(self.cpu, self.wall_s) if self.wall_s else "-"

    def per_unit(self, units: int, unit: str) -> str:
        """CPU milliseconds per unit of work (token, job) for each of our processes."""
        return ", ".join(f"{name} {1000 * seconds / units:.2f} ms/{unit}"
                         for name, seconds in self.cpu.items() if name != "others" and seconds > 0)


def percentile(values: list[float], q: float) -> float:
    """Linear interpolation between closest ranks (q in [0, 1])."""
    ordered = sorted(values)
    k = (len(ordered) - 1) * q
    lo = int(k)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def fmt_list(values: list[float], digits: int = 1) -> str:
    return "[" + ", ".join(f"{v:.{digits}f}" for v in values) + "]"


def fmt_runs(runs: list[LoadResult]) -> str:
    return " / ".join(f"{r.tok_s:.1f} tok/s ({r.requests} req, {r.elapsed_s:.1f} s)" for r in runs)


def ratio_row(measure: str, herd: float, baseline: float, unit: str, target: float | None) -> Row:
    ratio = herd / baseline
    return Row(measure, f"{herd:.1f} {unit}", f"{baseline:.1f} {unit}", f"{ratio:.2f}x",
               f"≥ {target:g}x" if target is not None else "—", None if target is None else ratio >= target)


def alternate(i: int, *sides: str) -> tuple[str, ...]:
    """The order of round i: as given, then reversed, so drift hits every side alike."""
    return sides if i % 2 == 0 else sides[::-1]


def in_process(work: Callable[[], T]) -> Callable[[], Awaitable[T]]:
    """A blocking in-process measurement, as a coroutine function for Bench.sample."""

    async def run() -> T:
        return work()

    return run


class Bench:
    def __init__(self, plan: Plan, stack: Stack, raw: RawModel, engine: DirectEngine, http: httpx.AsyncClient,
                 meter: CpuMeter, peer_url: str, retry_until: float) -> None:
        self.plan = plan
        self.raw = raw
        self.engine = engine
        self.http = http
        self.meter = meter
        self.url = stack.base_url
        self.peer_url = peer_url
        self.retry_until = retry_until  # time.monotonic() past which noisy samples are kept
        self.notes: list[str] = []
        self.retaken = 0
        self.kept_noisy = 0

    def note(self, text: str) -> None:
        self.notes.append(text)
        print(f"  · {text}", file=sys.stderr, flush=True)

    async def sample(self, usage: Usage, measure: Callable[[], Awaitable[T]]) -> T:
        """One metered sample; taken again while the rest of the machine was busy during it."""
        while True:
            self.meter.start()
            started = time.perf_counter()
            result = await measure()
            wall_s = time.perf_counter() - started
            used = self.meter.stop()
            noisy = used["others"] / wall_s > OTHERS_LIMIT
            if noisy and time.monotonic() < self.retry_until:
                self.retaken += 1
                wait_for_quiet(self.meter.pids, threshold=OTHERS_LIMIT,
                               max_wait_s=min(self.plan.quiet_wait_s, max(0.0, self.retry_until - time.monotonic())))
                continue
            self.kept_noisy += noisy
            usage.add(used, wall_s)
            return result

    # -- 1. single stream ---------------------------------------------------------------------

    async def single_stream(self, rendered_story: str) -> Row:
        body = {"model": DEMO_NAME, "prompt": STORY, "options": {"temperature": 0, "num_predict": STREAM_TOKENS}}
        tokens = self.raw.tokenize(rendered_story)
        await ollama_stream(self.http, self.url, body)  # warm every path
        self.raw.stream(tokens, STREAM_TOKENS)
        self.engine.stream(rendered_story, STREAM_TOKENS)
        rates: dict[str, list[float]] = {"herd": [], "raw": [], "engine": []}
        usage = {side: Usage() for side in rates}
        work: set[tuple[str, int, int]] = set()  # (side, prompt tokens, generated tokens)
        herd_tokens = 0
        for i in range(self.plan.stream_pairs):
            for side in alternate(i, "herd", "raw", "engine"):
                if side == "herd":
                    timing = await self.sample(usage[side], lambda: ollama_stream(self.http, self.url, body))
                    rates[side].append(timing.decode_tok_s)
                    work.add((side, timing.prompt_eval_count, timing.eval_count))
                    herd_tokens += timing.eval_count
                else:
                    run: StreamRun = await self.sample(usage[side], in_process(
                        (lambda: self.raw.stream(tokens, STREAM_TOKENS)) if side == "raw"
                        else (lambda: self.engine.stream(rendered_story, STREAM_TOKENS))))
                    rates[side].append(run.decode_tok_s)
                    work.add((side, len(tokens), len(run.tokens)))
        same = len({(p, g) for _, p, g in work}) == 1
        ratios = [h / r for h, r in zip(rates["herd"], rates["raw"], strict=True)]
        engine_ratios = [e / r for e, r in zip(rates["engine"], rates["raw"], strict=True)]
        self.note(f"row 1: (side, prompt tokens, generated tokens) {sorted(work)}"
                  + ("" if same else " — NOT the same work"))
        self.note(f"row 1: Herd {fmt_list(rates['herd'])} tok/s; raw {fmt_list(rates['raw'])} tok/s; "
                  f"paired ratios {fmt_list(ratios, 3)}")
        self.note(f"row 1: Herd's Engine in-process (no Redis, no HTTP) {fmt_list(rates['engine'])} tok/s; "
                  f"median ratio to raw {statistics.median(engine_ratios):.3f}")
        self.note(f"row 1: cores busy during Herd's streams: {usage['herd']}; during the raw loop: {usage['raw']}")
        self.note(f"row 1: CPU per generated token during Herd's streams: {usage['herd'].per_unit(herd_tokens, 'tok')}")
        ratio = statistics.median(ratios)
        return Row("1. single-stream decode, 128 tokens (tok/s, first to last token)",
                   f"{statistics.median(rates['herd']):.1f} tok/s", f"{statistics.median(rates['raw']):.1f} tok/s",
                   f"{ratio:.3f}x (median of paired ratios)", "≥ 0.97x", ratio >= 0.97)

    # -- 2. aggregate throughput --------------------------------------------------------------

    async def aggregate(self, stories: list[tuple[str, str]]) -> list[Row]:
        """`stories`: (text, the prompt Herd renders from it), each text led by another word."""
        herd_body = {"model": DEMO_NAME, "max_tokens": LOAD_TOKENS, "temperature": 0, "repeat_penalty": 1.0}
        tokens = self.raw.tokenize(stories[0][1])
        head = min(common_prefix(tokens, self.raw.tokenize(rendered)) for _, rendered in stories[1:8])
        self.note(f"row 2: prompts of {len(tokens)} tokens; the first {head} (the chat template's "
                  f"head) are the same in every request: Herd and the peer may reuse them, raw decodes them")
        seconds = self.plan.load_seconds
        sent = itertools.count()

        async def herd_request() -> int:
            text, _ = stories[next(sent) % len(stories)]
            return await openai_completion(self.http, self.url, {**herd_body, "prompt": text})

        async def peer_request() -> int:
            # The peer gets the prompt Herd renders from the same request: /v1/completions on
            # Herd applies the model's chat template (as Ollama does), llama-cpp-python's does not.
            _, rendered = stories[next(sent) % len(stories)]
            return await openai_completion(self.http, self.peer_url, {**herd_body, "prompt": rendered})

        def raw_batches(n: int) -> list[BatchRun]:
            runs: list[BatchRun] = []
            started = time.perf_counter()
            while time.perf_counter() - started < seconds:
                runs.append(self.raw.batched(tokens, n, LOAD_TOKENS))
            return runs

        await herd_request()  # warm
        await peer_request()
        rows: list[Row] = []
        for n in CLIENT_COUNTS:
            herd: list[LoadResult] = []
            peer: list[LoadResult] = []
            raw: list[BatchRun] = []
            usage = {"herd": Usage(), "peer": Usage(), "raw": Usage()}
            for i in range(self.plan.load_rounds):
                for side in alternate(i, "herd", "raw", "peer"):
                    if side == "herd":
                        herd.append(await self.sample(usage[side], partial(closed_loop, n, herd_request,
                                                                           duration_s=seconds)))
                    elif side == "peer":
                        peer.append(await self.sample(usage[side], partial(closed_loop, n, peer_request,
                                                                           duration_s=seconds)))
                    else:
                        raw += await self.sample(usage[side], in_process(partial(raw_batches, n)))
            herd_tok_s = sum(r.tokens for r in herd) / sum(r.elapsed_s for r in herd)
            peer_tok_s = sum(r.tokens for r in peer) / sum(r.elapsed_s for r in peer)
            raw_tok_s = sum(r.generated for r in raw) / sum(r.elapsed_s for r in raw)
            self.note(f"row 2, {n} clients: Herd {fmt_runs(herd)}; peer {fmt_runs(peer)}; "
                      f"raw {raw_tok_s:.1f} tok/s ({sum(r.generated for r in raw)} tokens)")
            self.note(f"row 2, {n} clients: cores busy during Herd: {usage['herd']}; during the peer: "
                      f"{usage['peer']}; during raw: {usage['raw']}")
            plural = "s" if n > 1 else ""
            rows.append(ratio_row(f"2. {n} client{plural}: aggregate tok/s vs llama-cpp-python server",
                                  herd_tok_s, peer_tok_s, "tok/s", 2.5 if n == 8 else None))
            rows.append(ratio_row(f"2. {n} client{plural}: aggregate tok/s vs raw batched decode (B={n})",
                                  herd_tok_s, raw_tok_s, "tok/s", 0.9 if n == 8 else None))
        return rows

    # -- 3. time to first token ---------------------------------------------------------------

    async def first_token(self) -> Row:
        def body(prompt: str) -> dict[str, Any]:
            return {"model": DEMO_NAME, "prompt": prompt, "raw": True, "options": {"temperature": 0, "num_predict": 1}}

        for i in range(3):  # warm both paths
            await ollama_first_token(self.http, self.url, body(led(i, TTFT_PROMPT)))
            self.raw.first_token_ns(led(i, TTFT_PROMPT))
        samples: list[FirstToken] = []
        raw: list[float] = []
        usage = Usage()
        for i in range(self.plan.ttft_pairs):
            prompt = led(i + 3, TTFT_PROMPT)  # the same prompt both sides, never one Herd has cells for
            herd_side = partial(ollama_first_token, self.http, self.url, body(prompt))
            raw_side = partial(self.raw.first_token_ns, prompt)
            for side in alternate(i, "herd", "raw"):
                if side == "herd":
                    samples.append(await self.sample(usage, herd_side))
                else:
                    raw.append(await self.sample(usage, in_process(raw_side)) / 1e6)
        herd = [s.client_ns / 1e6 for s in samples]
        added = [h - r for h, r in zip(herd, raw, strict=True)]
        p50, p95 = percentile(added, 0.5), percentile(added, 0.95)
        median = statistics.median
        outside = median((s.client_ns - s.total_ns) / 1e6 for s in samples)
        queue = median((s.total_ns - s.prompt_eval_ns) / 1e6 for s in samples)
        engine = median(s.prompt_eval_ns / 1e6 - r for s, r in zip(samples, raw, strict=True))
        n_prompt = len(self.raw.tokenize(led(0, TTFT_PROMPT)))
        self.note(f"row 3: {n_prompt} prompt tokens, {len(added)} pairs; "
                  f"added ms {fmt_list(sorted(added), 2)}")
        self.note(f"row 3: medians of the parts: client TTFT - server total_duration {outside:.2f} ms (HTTP both "
                  f"ways, client, gateway before admission); total_duration - prompt_eval_duration {queue:.2f} ms "
                  f"(Redis, worker, events back, final line); prompt_eval_duration - in-process TTFT "
                  f"{engine:.2f} ms (engine vs raw)")
        self.note(f"row 3: cores busy: {usage}")
        return Row(f"3. time to first token (ms), 1-token generation of a {n_prompt}-token prompt",
                   f"p50 {percentile(herd, 0.5):.2f}, p95 {percentile(herd, 0.95):.2f}",
                   f"p50 {percentile(raw, 0.5):.2f}, p95 {percentile(raw, 0.95):.2f}",
                   f"added: p50 {p50:+.2f} ms, p95 {p95:+.2f} ms", "p50 ≤ 1 ms", p50 <= 1.0)

    # -- 4. queue ---------------------------------------------------------------------------

    async def queue(self) -> Row:
        # A one-token prompt: there is nothing to reuse (a prompt's last token is always decoded).
        body = {"model": DEMO_NAME, "prompt": QUEUE_PROMPT, "raw": True,
                "options": {"temperature": 0, "num_predict": 1}}
        seconds = self.plan.queue_seconds

        async def request() -> int:
            return await ollama_generate(self.http, self.url, body)

        await closed_loop(QUEUE_CLIENTS, request, duration_s=0.5)  # warm: connections, caches
        herd: list[LoadResult] = []
        raw: list[float] = []
        usage = {"herd": Usage(), "raw": Usage()}
        for i in range(self.plan.queue_rounds):
            for side in alternate(i, "herd", "raw"):
                if side == "herd":
                    herd.append(await self.sample(usage[side], lambda: closed_loop(QUEUE_CLIENTS, request,
                                                                                   duration_s=seconds)))
                else:
                    raw.append(await self.sample(usage[side], in_process(
                        lambda: self.raw.prefill_jobs(QUEUE_PROMPT, N_PARALLEL, seconds))))
        herd_jobs = sum(r.requests for r in herd) / sum(r.elapsed_s for r in herd)
        raw_jobs = statistics.mean(raw)
        single = self.raw.prefill_jobs(QUEUE_PROMPT, 1, min(2.0, seconds))
        jobs = sum(r.requests for r in herd)
        self.note(f"row 4: Herd {fmt_list([r.req_s for r in herd])} jobs/s; in-process {fmt_list(raw)} jobs/s "
                  f"with 8 jobs per llama_decode, {single:.1f} jobs/s with one")
        self.note(f"row 4: cores busy during Herd: {usage['herd']}; during in-process: {usage['raw']}")
        self.note(f"row 4: CPU per job during Herd: {usage['herd'].per_unit(jobs, 'job')}")
        return ratio_row(f"4. 1-token jobs/s, {QUEUE_CLIENTS} clients, vs in-process prefill + 1 token (8 per decode)",
                         herd_jobs, raw_jobs, "jobs/s", None)


def machine_facts() -> list[str]:
    nproc = subprocess.run(["nproc"], capture_output=True, text=True, check=False).stdout.strip()
    lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
    model = next((line.split(":", 1)[1].strip() for line in lscpu.splitlines() if line.startswith("Model name")), "?")
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    return [
        f"date: {datetime.datetime.now(datetime.UTC).strftime('%Y-%m-%d %H:%M UTC')}",
        f"nproc: {nproc}; lscpu model name: {model}",
        f"Python {platform.python_version()}, llama-cpp-python {llama_cpp.__version__}; load average at start {load}",
    ]


def render_table(rows: list[Row]) -> str:
    lines = ["| measure | Herd | baseline | result | target | met |", "|---|---|---|---|---|---|"]
    for r in rows:
        met = "—" if r.met is None else ("yes" if r.met else "**no**")
        lines.append(f"| {r.measure} | {r.herd} | {r.baseline} | {r.result} | {r.target} | {met} |")
    return "\n".join(lines)


async def rendered_prompt(stack: Stack, text: str) -> str:
    """The exact prompt text Herd's gateway renders for `text` (the model's chat template)."""
    model = await Catalog(ModelStore(stack.models)).resolve(DEMO_NAME)
    return model.render_generate(text, None)


async def run_all(bench_args: tuple[Plan, Stack, RawModel, DirectEngine, CpuMeter, str],
                  retry_until: float) -> tuple[list[Row], list[str]]:
    plan, stack, raw, engine, meter, peer_url = bench_args
    story = await rendered_prompt(stack, STORY)
    stories = [(led(i, STORY), await rendered_prompt(stack, led(i, STORY))) for i in range(STORY_VARIANTS)]
    async with client() as http:
        bench = Bench(plan, stack, raw, engine, http, meter, peer_url, retry_until)
        rows: list[Row] = []
        steps: list[tuple[str, Callable[[], Awaitable[Row | list[Row]]]]] = [
            ("1. single stream", lambda: bench.single_stream(story)),
            ("2. aggregate throughput", lambda: bench.aggregate(stories)),
            ("3. time to first token", bench.first_token),
            ("4. queue", bench.queue),
        ]
        for name, step in steps:
            print(f"[{time.strftime('%H:%M:%S')}] {name}", file=sys.stderr, flush=True)
            result = await step()
            rows.extend(result if isinstance(result, list) else [result])
        bench.note(f"samples taken again because other processes used > {OTHERS_LIMIT} cores meanwhile: "
                   f"{bench.retaken}; noisy samples kept (past the retry deadline): {bench.kept_noisy}")
        return rows, bench.notes


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.run",
                                     description="Herd's benchmarks; see docs/performance.md")
    parser.add_argument("--quick", action="store_true", help="a reduced run, for a smoke check (< 2 minutes)")
    parser.add_argument("--threads", type=int, default=THREADS,
                        help=f"llama.cpp threads for every side (default {THREADS}; other values are experiments)")
    args = parser.parse_args()
    threads: int = args.threads
    plan = QUICK if args.quick else FULL
    # A plain SIGTERM would skip the cleanup below and leave the servers running.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    started = time.perf_counter()
    retry_until = time.monotonic() + plan.retry_until_s
    facts = machine_facts()
    model_path = str(demo_gguf())
    with contextlib.ExitStack() as cleanup:
        root = Path(cleanup.enter_context(tempfile.TemporaryDirectory(prefix="herd-bench-")))
        server = cleanup.enter_context(EmbeddedRedis())
        stack = cleanup.enter_context(running_stack(root, server.url, num_parallel=N_PARALLEL, num_thread=threads,
                                                    context_length=CTX_PER_SEQ, keep_alive="30m"))
        peer = cleanup.enter_context(running_peer(model_path, port=free_port(), alias=DEMO_NAME, n_threads=threads,
                                                  n_ctx=CTX_PER_SEQ, flash_attn=True, log_path=root / "peer.log"))
        raw = RawModel(model_path, n_seq=N_PARALLEL, ctx_per_seq=CTX_PER_SEQ, n_threads=threads)
        cleanup.callback(raw.close)
        engine = DirectEngine(model_path, n_parallel=N_PARALLEL, ctx_per_seq=CTX_PER_SEQ, n_threads=threads)
        cleanup.callback(engine.close)
        assert stack.gateway is not None
        with redis.Redis.from_url(server.url) as r:
            redis_pid = int(r.info("server")["process_id"])
        meter = CpuMeter({"gateway": stack.gateway.pid, "worker": stack.workers[0].pid, "redis": redis_pid,
                          "peer": peer.pid, "bench": os.getpid()})
        rows, notes = asyncio.run(run_all((plan, stack, raw, engine, meter, peer.base_url), retry_until))
    print("## Machine\n")
    print("\n".join(f"- {f}" for f in facts))
    flags = (" --quick" if args.quick else "") + (f" --threads {threads}" if threads != THREADS else "")
    omp = {k: v for k, v in os.environ.items() if k.startswith(("OMP_", "GOMP_"))}
    print(f"- llama.cpp threads: {threads}; OpenMP environment: {omp or 'none (defaults)'}")
    print(f"- command: `.venv/bin/python -m bench.run{flags}` "
          f"({time.perf_counter() - started:.0f} s)")
    print("\n## Results\n")
    print(render_table(rows))
    print("\n## Notes (raw figures; cores = CPU seconds per wall second, per process)\n")
    print("\n".join(f"- {n}" for n in notes))


if __name__ == "__main__":
    main()
