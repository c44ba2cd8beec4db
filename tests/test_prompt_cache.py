"""A sequence's cells outlive its request: the next request that starts with the same tokens
(a chat's next turn, a shared system prompt) decodes only what is new. Real model, real llama.cpp."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam

from herd.protocol import SamplingOptions

pytest.importorskip("llama_cpp")

from tests.stack import running_stack
from tests.test_engine import chat, finished, run, smollm2_path
from tests.test_metrics import scrape
from worker.engine import Engine, Finished
from worker.kept_cells import reusable
from worker.saved_prompts import SavedPrompts
from worker.token_prefix import common_prefix

GREEDY = SamplingOptions(temperature=0.0, num_predict=24)
SYSTEM = "<|im_start|>system\nYou are a helpful assistant who answers briefly and plainly.<|im_end|>\n"
FIRST = SYSTEM + chat("Name three rivers in Europe.")


@pytest.fixture(scope="module")
def engine() -> Iterator[Engine]:
    eng = Engine(smollm2_path(), n_parallel=2, ctx_per_seq=512, n_threads=2, n_batch=128)  # prompts take steps
    yield eng
    eng.close()


def answer(engine: Engine, prompt: str, options: SamplingOptions = GREEDY) -> tuple[str, Finished]:
    out = run(engine, {"r": (prompt, options)})["r"]
    return out.text, finished(out)


def test_a_chats_next_turn_decodes_only_what_is_new(engine: Engine) -> None:
    text, first = answer(engine, FIRST)
    second_prompt = FIRST + text + "<|im_end|>\n" + chat("Which is the longest?")
    _, second = answer(engine, second_prompt)
    n_first = len(engine.weights.tokenize(FIRST))
    assert first.prompt_cached_count <= len(engine.weights.tokenize(SYSTEM))  # at most an earlier test's system prompt
    assert second.prompt_eval_count == len(engine.weights.tokenize(second_prompt))  # counted whole, as Ollama
    # All it shares with the first turn's cells, but the last MIN_CHUNK tokens: decoded again.
    assert second.prompt_cached_count == reusable(second.prompt_eval_count) >= n_first - 65


def test_the_same_prompt_again_decodes_only_its_last_token_and_answers_the_same(engine: Engine) -> None:
    prompt = SYSTEM + chat("What colour is the sky?")
    text, _ = answer(engine, prompt)
    again, finished = answer(engine, prompt)
    assert finished.prompt_cached_count == reusable(finished.prompt_eval_count) > 0
    assert again == text


def test_a_different_prompt_takes_the_least_recently_used_sequence(engine: Engine) -> None:
    answer(engine, FIRST)  # sequence A holds the conversation
    answer(engine, chat("Count to five."))  # an unrelated prompt: the other sequence
    _, finished = answer(engine, FIRST)
    assert finished.prompt_cached_count == reusable(finished.prompt_eval_count)  # A's cells were left alone


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
    assert 0 < finished.prompt_cached_count < reusable(finished.prompt_eval_count)


def test_common_prefix_counts_shared_leading_tokens() -> None:
    tokens = list(range(1000))
    assert common_prefix(tokens, [*tokens[:600], -1]) == 600
    assert common_prefix(tokens, tokens) == 1000
    assert common_prefix([], tokens) == 0
    assert common_prefix([7], [8]) == 0


# -- cells saved to host memory when their sequence goes to another request ------------------

LONG_CHAT = SYSTEM + chat(" ".join(f"Note {i}: buy item {i}." for i in range(30)) + " What is note 7?")


@pytest.mark.parametrize("cache_ram_mib", [64, 0])
def test_a_conversation_pushed_out_of_its_sequence_comes_back_from_host_memory(cache_ram_mib: int) -> None:
    with Engine(smollm2_path(), n_parallel=1, ctx_per_seq=512, n_threads=2, cache_ram_mib=cache_ram_mib) as eng:
        text, _ = answer(eng, LONG_CHAT)
        answer(eng, chat("Count to five."))  # takes the only sequence
        follow_up = LONG_CHAT + text + "<|im_end|>\n" + chat("And note 8?")
        _, second = answer(eng, follow_up)
    if cache_ram_mib:
        assert second.prompt_cached_count == reusable(second.prompt_eval_count)  # copied back; the end decoded
    else:
        assert second.prompt_cached_count < 10  # at most the chat template's first tokens


def test_a_restored_prompt_answers_as_it_did() -> None:
    with Engine(smollm2_path(), n_parallel=1, ctx_per_seq=512, n_threads=2, cache_ram_mib=64) as eng:
        text, _ = answer(eng, LONG_CHAT)
        answer(eng, chat("Count to five."))
        again, finished = answer(eng, LONG_CHAT)
    assert finished.prompt_cached_count == reusable(finished.prompt_eval_count)
    assert again == text


def test_saved_prompts_keep_the_newest_within_the_budget_and_drop_what_a_later_turn_extends() -> None:
    saved = SavedPrompts(budget_bytes=300)
    turn1 = list(range(100))
    saved.put(turn1, "state-1", 100)
    saved.put([*turn1, *range(500, 580)], "state-2", 120)  # the same chat, one turn on: turn 1 goes
    assert len(saved) == 1 and saved.bytes == 120
    other = list(range(1000, 1100))
    saved.put(other, "state-3", 100)
    saved.put(list(range(2000, 2100)), "state-4", 100)  # past the budget: the oldest goes
    assert saved.bytes == 200
    assert saved.best([*turn1, 7]) == (-1, 0)  # the chat was the oldest
    key, shared = saved.best([*other, 5, 6])
    assert shared == 100 and saved.take(key).state == "state-3"
    assert saved.best(other) == (-1, 0)  # taken: its cells went back into a sequence
    assert not saved.wants(list(range(10)), 10)  # too few tokens to be worth keeping
    assert not saved.wants(turn1, 301)  # larger than the whole budget


def saved_bytes_reported(base_url: str, wanted: Callable[[float], bool], timeout: float = 10) -> bool:
    """Whether /metrics shows the saved-prompt gauge as wanted within `timeout` (heartbeats: 1 s)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if wanted(sum(v for (name, _), v in scrape(base_url).items() if name == "herd_worker_saved_prompt_bytes")):
            return True
        time.sleep(0.2)
    return False


def test_through_the_stack_a_pushed_out_chat_reports_its_restored_tokens(tmp_path: Path, model_name: str) -> None:
    """HERD_CACHE_RAM reaches the worker; judged by the openai SDK's usage."""
    with running_stack(tmp_path, num_parallel=1) as stack:
        client = openai.OpenAI(base_url=stack.base_url + "/v1", api_key="unused", _strict_response_validation=True,
                               max_retries=0)
        notes = " ".join(f"Note {i}: buy item {i}." for i in range(30))
        messages: list[ChatCompletionMessageParam] = [{"role": "user", "content": notes + " What is note 7?"}]
        first = client.chat.completions.create(model=model_name, messages=messages, temperature=0, max_tokens=16)
        client.chat.completions.create(model=model_name, messages=[{"role": "user", "content": "Hi"}], max_tokens=2)
        assert saved_bytes_reported(stack.base_url, lambda n: n > 0)  # the conversation's cells, in host memory
        messages += [{"role": "assistant", "content": first.choices[0].message.content or ""},
                     {"role": "user", "content": "And note 8?"}]
        second = client.chat.completions.create(model=model_name, messages=messages, temperature=0, max_tokens=16)
        assert saved_bytes_reported(stack.base_url, lambda n: n == 0)  # copied back into the sequence
    assert first.usage is not None and second.usage is not None and second.usage.prompt_tokens_details is not None
    cached = second.usage.prompt_tokens_details.cached_tokens
    assert cached is not None and cached == reusable(second.usage.prompt_tokens)


def test_interleaved_conversations_on_two_sequences_all_finish_and_mostly_reuse() -> None:
    """Three chats take turns, two at a time, on two sequences: cells are kept, saved, copied
    back and cut all the while. Bookkeeping that drifted from the real cells would show as a
    failed decode (positions out of order) or a turn that finds nothing."""
    topics = ["rivers", "mountains", "deserts"]
    chats = {t: SYSTEM + " ".join(f"Fact {i} about {t}: it is notable." for i in range(12)) for t in topics}
    cached_later_turns: list[int] = []
    with Engine(smollm2_path(), n_parallel=2, ctx_per_seq=1024, n_threads=2, cache_ram_mib=64) as eng:
        for turn in range(3):
            for pair in (topics[:2], topics[1:], topics[::2]):
                requests = {t: (chats[t] + chat(f"Question {turn} about {t}?"), GREEDY) for t in pair}
                outcomes = run(eng, requests)
                for t in pair:
                    done = finished(outcomes[t])
                    if turn > 0:
                        cached_later_turns.append(done.prompt_cached_count)
                    chats[t] = requests[t][0] + outcomes[t].text + "<|im_end|>\n"
        assert eng.free_slots == 2
        assert eng.saved_prompt_bytes <= 64 * 2**20
    # Every later turn starts with its chat so far: found in a sequence or copied back.
    assert all(n > 100 for n in cached_later_turns), cached_later_turns


def test_a_repeated_greedy_request_answers_as_it_did_from_kept_cells() -> None:
    """The prompt's end is decoded again through the kernel a whole prompt goes through
    (kept_cells.reusable); reusing all but the last token changed 3 of these 3 answers."""
    with Engine(smollm2_path(), n_parallel=1, ctx_per_seq=1024, n_threads=2, cache_ram_mib=0) as eng:
        for topic, points in (("rivers", 5), ("bread", 13), ("the moon", 21)):
            prompt = chat(" ".join(f"Point {i}: {topic} matter in way {i}." for i in range(points)) +
                          f" Summarise what you know about {topic}.")
            options = SamplingOptions(temperature=0.0, num_predict=48)
            first, decoded = answer(eng, prompt, options)
            again, kept = answer(eng, prompt, options)
            assert decoded.prompt_cached_count < kept.prompt_cached_count == reusable(kept.prompt_eval_count)
            assert again == first, topic
