"""A sequence's cells outlive its request: the next request that starts with the same tokens
(a chat's next turn, a shared system prompt) decodes only what is new. Real model, real llama.cpp."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from herd.protocol import SamplingOptions

pytest.importorskip("llama_cpp")

from tests.test_engine import chat, smollm2_path
from worker.engine import Engine, Finished, TextOut, common_prefix

GREEDY = SamplingOptions(temperature=0.0, num_predict=24)
SYSTEM = "<|im_start|>system\nYou are a helpful assistant who answers briefly and plainly.<|im_end|>\n"
FIRST = SYSTEM + chat("Name three rivers in Europe.")


@pytest.fixture(scope="module")
def engine() -> Iterator[Engine]:
    eng = Engine(smollm2_path(), n_parallel=2, ctx_per_seq=512, n_threads=2, n_batch=128)  # prompts take steps
    yield eng
    eng.close()


def answer(engine: Engine, prompt: str, options: SamplingOptions = GREEDY) -> tuple[str, Finished]:
    engine.add("r", prompt, options)
    parts: list[str] = []
    while True:
        for event in engine.step():
            if isinstance(event, TextOut):
                parts.append(event.text)
            elif isinstance(event, Finished):
                return "".join(parts), event
            else:
                raise AssertionError(event)


def test_a_chats_next_turn_decodes_only_what_is_new(engine: Engine) -> None:
    text, first = answer(engine, FIRST)
    second_prompt = FIRST + text + "<|im_end|>\n" + chat("Which is the longest?")
    _, second = answer(engine, second_prompt)
    n_first = len(engine.weights.tokenize(FIRST))
    assert first.prompt_cached_count <= len(engine.weights.tokenize(SYSTEM))  # at most an earlier test's system prompt
    assert second.prompt_eval_count == len(engine.weights.tokenize(second_prompt))  # counted whole, as Ollama
    assert second.prompt_cached_count >= n_first  # the first turn's prompt and (most of) its answer


def test_the_same_prompt_again_decodes_only_its_last_token_and_answers_the_same(engine: Engine) -> None:
    prompt = SYSTEM + chat("What colour is the sky?")
    text, _ = answer(engine, prompt)
    again, finished = answer(engine, prompt)
    assert finished.prompt_cached_count == finished.prompt_eval_count - 1
    assert again == text


def test_a_different_prompt_takes_the_least_recently_used_sequence(engine: Engine) -> None:
    answer(engine, FIRST)  # sequence A holds the conversation
    answer(engine, chat("Count to five."))  # an unrelated prompt: the other sequence
    _, finished = answer(engine, FIRST)
    assert finished.prompt_cached_count == finished.prompt_eval_count - 1  # A's cells were left alone


def test_a_shifted_sequence_leaves_nothing_to_reuse(engine: Engine) -> None:
    counting = "1, 2, 3, 4, 5, 6,"  # raw: greedy counting runs past the 512 cells and shifts
    answer(engine, counting, SamplingOptions(temperature=0.0, num_predict=700))
    answer(engine, chat("Count to five."))  # the other sequence, now the most recently used
    _, finished = answer(engine, counting)
    assert finished.prompt_cached_count == 0


def test_cancelled_mid_prompt_the_fed_part_is_reused(engine: Engine) -> None:
    long_prompt = SYSTEM + chat(" ".join(f"Line {i}." for i in range(80)))  # 2-3 steps of 128
    engine.add("gone", long_prompt, GREEDY)
    engine.step()  # one chunk of the prompt fed
    engine.cancel("gone")
    _, finished = answer(engine, long_prompt)
    assert 0 < finished.prompt_cached_count < finished.prompt_eval_count - 1


def test_common_prefix_counts_shared_leading_tokens() -> None:
    tokens = list(range(1000))
    assert common_prefix(tokens, [*tokens[:600], -1]) == 600
    assert common_prefix(tokens, tokens) == 1000
    assert common_prefix([], tokens) == 0
    assert common_prefix([7], [8]) == 0
