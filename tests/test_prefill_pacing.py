"""A long prompt admitted beside running streams is fed in slices, so they keep streaming
(worker/prefill_pacer.py), with the real model and llama.cpp."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import ollama
import pytest

from herd.protocol import SamplingOptions
from worker.prefill_pacer import MIN_CHUNK, PrefillPacer

pytest.importorskip("llama_cpp")

from tests.stack import running_stack
from tests.test_engine import STORY, chat, smollm2_path
from worker.engine import Engine, Finished, TextOut

LONG = chat(" ".join(f"Box {i} holds {i % 7 + 1} apples." for i in range(80)) + " How many boxes are there?")
N_BATCH = 512


@dataclass
class Interleaving:
    prompt_tokens: int = 0
    stream_texts_during_prefill: int = 0  # text events the running stream got before the long prompt's first
    texts: dict[str, list[str]] = field(default_factory=lambda: {"stream": [], "long": []})


def run_beside_a_stream(slice_ms: float) -> Interleaving:
    engine = Engine(smollm2_path(), n_parallel=2, ctx_per_seq=2048, n_threads=2, n_batch=N_BATCH,
                    prefill_slice_ms=slice_ms)
    try:
        seen = Interleaving(prompt_tokens=len(engine.weights.tokenize(LONG)))
        assert seen.prompt_tokens > N_BATCH  # unpaced, it takes more than one step
        engine.add("stream", STORY, SamplingOptions(temperature=0.0, num_predict=300))
        while not seen.texts["stream"]:
            seen.texts["stream"] += [e.text for e in engine.step() if isinstance(e, TextOut)]
        engine.add("long", LONG, SamplingOptions(temperature=0.0, num_predict=8))
        ended: set[str] = set()
        while len(ended) < 2:
            for event in engine.step():
                if isinstance(event, TextOut):
                    seen.texts[event.request_id].append(event.text)
                    if event.request_id == "stream" and not seen.texts["long"]:
                        seen.stream_texts_during_prefill += 1
                elif isinstance(event, Finished):
                    ended.add(event.request_id)
                else:
                    raise AssertionError(event)
        return seen
    finally:
        engine.close()


def test_a_running_stream_keeps_streaming_while_a_long_prompt_is_fed() -> None:
    unpaced = run_beside_a_stream(0)
    paced = run_beside_a_stream(1)  # a slice too short for any chunk: every chunk is MIN_CHUNK tokens
    assert unpaced.stream_texts_during_prefill <= unpaced.prompt_tokens // N_BATCH + 1
    assert paced.stream_texts_during_prefill >= paced.prompt_tokens // MIN_CHUNK // 2
    # The running stream's tokens are computed alone whatever rides beside them. (The long
    # prompt's answer may not match to the token: llama.cpp's kernels, flash attention's in
    # particular, round differently for different chunk sizes, unsliced too.)
    assert "".join(paced.texts["stream"]) == "".join(unpaced.texts["stream"])
    assert paced.texts["long"] and unpaced.texts["long"]


def test_through_the_stack_a_stream_keeps_coming_while_a_long_prompt_is_fed(tmp_path: Path,
                                                                            model_name: str) -> None:
    """HERD_PREFILL_SLICE reaches the worker: judged by the ollama client's stream."""
    with running_stack(tmp_path, num_parallel=2, prefill_slice="1ms") as stack:
        client = ollama.Client(host=stack.base_url)
        client.generate(model=model_name, prompt="", keep_alive="5m")  # loaded before the clock starts
        arrivals: list[float] = []

        def stream() -> None:
            for _ in client.generate(model=model_name, prompt=STORY, raw=True, stream=True,
                                     options={"temperature": 0, "num_predict": 200}):
                arrivals.append(time.monotonic())

        streaming = threading.Thread(target=stream)
        streaming.start()
        while len(arrivals) < 3:
            time.sleep(0.01)
        sent = time.monotonic()
        first = next(iter(client.generate(model=model_name, prompt=LONG, raw=True, stream=True,
                                          options={"temperature": 0, "num_predict": 4})))
        answered = time.monotonic()
        streaming.join()
        assert first.response is not None
        during = [t for t in arrivals if sent < t < answered]
        # 725 prompt tokens in 65-token chunks: about 11 steps, each with a token for the stream
        # (a 512-token batch would leave it 2).
        assert len(during) >= 6, (len(during), answered - sent)


def test_the_pacer_sizes_chunks_to_the_slice_from_timed_steps() -> None:
    pacer = PrefillPacer(300)
    assert pacer.prompt_budget(generating=0, room=512) == 512  # nobody waits: the whole batch
    assert pacer.prompt_budget(generating=2, room=510) == MIN_CHUNK  # nothing timed yet
    pacer.observe(generating=2, prompt_tokens=0, step_ms=20)  # a decode step: 20 ms
    pacer.observe(generating=2, prompt_tokens=80, step_ms=20 + 80 * 2.0)  # 2 ms a prompt token
    assert pacer.prompt_budget(generating=2, room=510) == (300 - 20) // 2
    assert pacer.prompt_budget(generating=2, room=10) == 10
    pacer.observe(generating=2, prompt_tokens=80, step_ms=20 + 80 * 50.0)  # the model got slow
    assert pacer.prompt_budget(generating=2, room=510) == MIN_CHUNK


@pytest.mark.parametrize("slice_ms", [0, float("inf")])
def test_a_pacer_without_a_bound_gives_prompts_the_whole_batch(slice_ms: float) -> None:
    pacer = PrefillPacer(slice_ms)
    pacer.observe(generating=1, prompt_tokens=100, step_ms=500)
    assert pacer.prompt_budget(generating=1, room=511) == 511
