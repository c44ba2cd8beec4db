"""What a long prompt admitted beside running streams does to them (a diagnostic, not a row).

    .venv/bin/python -m bench.prefill_pause [--rounds 3] [--streams 1] [--slice-ms 250]

Each round runs the same scene twice on Herd's Engine in this process, in alternating order:
greedy streams are generating when a long prompt (about 2 300 tokens) arrives. Once with
`prefill_slice_ms=0` (prompts take a whole batch per step: llama.cpp's server and Ollama work
this way) and once with the slice given (HERD_PREFILL_SLICE). Printed: the running streams'
gaps between tokens while the prompt is fed, how many tokens they got meanwhile, and the long
prompt's time to first token, with the sliced figures as ratios to the unsliced ones.
"""

from __future__ import annotations

import argparse
import statistics
import time

from bench.run import alternate, led, percentile
from herd.config import DEFAULT_PREFILL_SLICE_MS
from herd.demo import demo_gguf
from herd.protocol import SamplingOptions
from worker.engine import Engine, Failed, Finished, TextOut

# Raw, about 2 310 tokens; each round's is led by its own word (bench.run.led), since an engine
# keeps a prompt's cells and would not feed the same prompt again.
LONG_PROMPT = " ".join(f"item {i} is a box of apples;" for i in range(220))
STREAM_PROMPT = "1, 2, 3, 4, 5, 6,"  # greedy counting never ends early


def scene(engine: Engine, streams: int, long_prompt: str) -> tuple[list[float], float]:
    """(gaps in ms between the running streams' tokens while the long prompt is fed, its TTFT in s).
    `long_prompt` must be new to the engine: one it has cells for would not be fed again."""
    greedy = SamplingOptions(temperature=0.0, num_predict=4000)
    for i in range(streams):
        engine.add(f"stream-{i}", STREAM_PROMPT, greedy)
    for _ in range(10):  # all streams generating
        engine.step()
    admitted = time.perf_counter()
    engine.add("long", long_prompt, SamplingOptions(temperature=0.0, num_predict=1))
    last = {f"stream-{i}": admitted for i in range(streams)}  # a stall counts from the prompt's arrival
    gaps: list[float] = []
    while True:
        events = engine.step()
        now = time.perf_counter()
        if any(isinstance(e, TextOut | Finished) and e.request_id == "long" for e in events):
            break
        for event in events:
            if isinstance(event, Failed):
                raise RuntimeError(event.message)
            if isinstance(event, TextOut):
                gaps.append((now - last[event.request_id]) * 1000)
                last[event.request_id] = now
    ttft = now - admitted
    for request_id in engine.active_ids:
        engine.cancel(request_id)
    engine.step()
    return gaps, ttft


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--streams", type=int, default=1)
    parser.add_argument("--slice-ms", type=float, default=DEFAULT_PREFILL_SLICE_MS)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    sides = {"unsliced": 0.0, "sliced": args.slice_ms}
    engines = {name: Engine(str(demo_gguf()), n_parallel=args.streams + 1, ctx_per_seq=4096,
                            n_threads=args.threads, prefill_slice_ms=slice_ms)
               for name, slice_ms in sides.items()}
    gaps: dict[str, list[float]] = {name: [] for name in sides}
    tokens: dict[str, list[int]] = {name: [] for name in sides}
    ttft: dict[str, list[float]] = {name: [] for name in sides}
    prompt_tokens = len(engines["sliced"].weights.tokenize(led(0, LONG_PROMPT)))
    try:
        for i in range(args.rounds):
            for name in alternate(i, *sides):
                round_gaps, round_ttft = scene(engines[name], args.streams, led(i, LONG_PROMPT))
                gaps[name] += round_gaps
                tokens[name].append(len(round_gaps))
                ttft[name].append(round_ttft)
    finally:
        for engine in engines.values():
            engine.close()
    base = statistics.median(ttft["unsliced"])
    print(f"{args.streams} running stream(s), a {prompt_tokens}-token prompt arriving, {args.rounds} rounds, "
          f"slice {args.slice_ms:g} ms\n")
    print("| prompt feeding | stream gap p50 (ms) | gap max (ms) | stream tokens meanwhile | long prompt TTFT (s) "
          "| TTFT vs unsliced |\n|---|---|---|---|---|---|")
    for name in sides:
        print(f"| {name} | {percentile(gaps[name], 0.5):.0f} | {max(gaps[name]):.0f} | "
              f"{statistics.median(tokens[name]):.0f} | {statistics.median(ttft[name]):.2f} "
              f"({', '.join(f'{t:.2f}' for t in ttft[name])}) | {statistics.median(ttft[name]) / base:.2f}x |")


if __name__ == "__main__":
    main()
