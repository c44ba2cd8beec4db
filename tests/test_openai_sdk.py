"""The OpenAI API as the `openai` SDK sees it, with strict response validation."""

from __future__ import annotations

from typing import TypedDict

import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam

from tests.stack import Stack


class Sampling(TypedDict):
    """Parameters both create methods take, so they can be spread into either."""

    temperature: float
    seed: int
    max_tokens: int


GREEDY: Sampling = {"temperature": 0, "seed": 42, "max_tokens": 24}


@pytest.fixture(scope="module")
def client(herd: Stack) -> openai.OpenAI:
    return openai.OpenAI(base_url=herd.base_url + "/v1", api_key="unused", _strict_response_validation=True,
                         max_retries=0)


def test_chat_completion_answers_with_usage(client: openai.OpenAI, model_name: str) -> None:
    reply = client.chat.completions.create(
        model=model_name, messages=[{"role": "user", "content": "Name a colour."}], **GREEDY)
    choice = reply.choices[0]
    assert reply.object == "chat.completion"
    assert choice.message.role == "assistant"
    assert choice.message.content
    assert choice.finish_reason in {"stop", "length"}
    assert reply.usage is not None
    assert reply.usage.prompt_tokens > 0
    assert 0 < reply.usage.completion_tokens <= 24
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + reply.usage.completion_tokens


def test_streamed_chat_equals_unstreamed_chat(client: openai.OpenAI, model_name: str) -> None:
    messages: list[ChatCompletionMessageParam] = [{"role": "user", "content": "Write one sentence about the sea."}]
    whole = client.chat.completions.create(model=model_name, messages=messages, **GREEDY)
    stream = client.chat.completions.create(model=model_name, messages=messages, stream=True,
                                            stream_options={"include_usage": True}, **GREEDY)
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content
    assert chunks[0].choices[0].delta.role == "assistant"
    finishing = [c for c in chunks if c.choices and c.choices[0].finish_reason]
    assert [c.choices[0].finish_reason for c in finishing] == [whole.choices[0].finish_reason]
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None and whole.usage is not None
    assert chunks[-1].usage.completion_tokens == whole.usage.completion_tokens


def test_max_tokens_caps_the_answer(client: openai.OpenAI, model_name: str) -> None:
    reply = client.chat.completions.create(
        model=model_name, messages=[{"role": "user", "content": "Count from one to fifty."}],
        temperature=0, max_tokens=5)
    assert reply.choices[0].finish_reason == "length"
    assert reply.usage is not None and reply.usage.completion_tokens == 5


def test_stop_string_ends_the_answer_and_is_not_shown(client: openai.OpenAI, model_name: str) -> None:
    messages: list[ChatCompletionMessageParam] = [
        {"role": "user", "content": "List the numbers 1, 2, 3, 4, 5 separated by commas."}]
    free = client.chat.completions.create(model=model_name, messages=messages, **GREEDY)
    text = free.choices[0].message.content or ""
    assert len(text) > 4
    stop = text[2:4]
    cut = client.chat.completions.create(model=model_name, messages=messages, stop=[stop], **GREEDY)
    assert cut.choices[0].message.content == text[: text.index(stop)]
    assert cut.choices[0].finish_reason == "stop"


def test_completions_stream_and_not(client: openai.OpenAI, herd: Stack, model_name: str) -> None:
    whole = client.completions.create(model=model_name, prompt="The capital of France is", **GREEDY)
    assert whole.object == "text_completion"
    assert whole.choices[0].text
    # The SDK types a completion chunk's finish_reason as never null, but OpenAI itself streams
    # null until the last chunk (as Herd does), so strict validation would reject OpenAI too.
    lenient = openai.OpenAI(base_url=herd.base_url + "/v1", api_key="unused", max_retries=0)
    streamed = list(lenient.completions.create(model=model_name, prompt="The capital of France is",
                                               stream=True, stream_options={"include_usage": True}, **GREEDY))
    assert "".join(c.choices[0].text for c in streamed if c.choices) == whole.choices[0].text
    assert [c.choices[0].finish_reason for c in streamed if c.choices][-1] == whole.choices[0].finish_reason
    assert all(c.choices[0].finish_reason is None for c in streamed[:-2])
    assert streamed[-1].usage is not None and whole.usage is not None
    counts = ("prompt_tokens", "completion_tokens", "total_tokens")  # cached_tokens differ: the prompt was seen
    assert [getattr(streamed[-1].usage, n) for n in counts] == [getattr(whole.usage, n) for n in counts]


def test_a_chats_next_turn_reports_its_cached_prompt_tokens(client: openai.OpenAI, model_name: str) -> None:
    messages: list[ChatCompletionMessageParam] = [
        {"role": "system", "content": "You answer in one short sentence. Session 7f3a."},  # unseen before
        {"role": "user", "content": "Name a planet."}]
    first = client.chat.completions.create(model=model_name, messages=messages, **GREEDY)
    assert first.usage is not None and first.usage.prompt_tokens_details is not None
    messages += [{"role": "assistant", "content": first.choices[0].message.content or ""},
                 {"role": "user", "content": "Name another."}]
    second = client.chat.completions.create(model=model_name, messages=messages, **GREEDY)
    assert second.usage is not None and second.usage.prompt_tokens_details is not None
    cached = second.usage.prompt_tokens_details.cached_tokens
    # All of the first turn, but the last 65 tokens of the prompt, decoded again (worker/kept_cells.py).
    assert cached is not None and cached == second.usage.prompt_tokens - 65 >= first.usage.prompt_tokens - 65


def test_models_are_listed_and_retrieved(client: openai.OpenAI, model_name: str) -> None:
    ids = [m.id for m in client.models.list()]
    assert model_name in ids
    model = client.models.retrieve(model_name)
    assert model.id == model_name
    assert model.owned_by == "library"


def test_unknown_model_is_a_404_in_openai_shape(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        client.chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "hi"}])
    assert caught.value.status_code == 404
    body = caught.value.body
    assert isinstance(body, dict)
    assert "no-such-model" in body["message"]
    assert body["type"] == "not_found_error"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("no-such-model")


def test_bad_field_is_a_400_naming_it(client: openai.OpenAI, model_name: str) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model=model_name, messages=[{"role": "user", "content": "hi"}],
                                       extra_body={"temperature": "hot"})
    assert "temperature" in str(caught.value)
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model=model_name, messages=[])
    assert "messages" in str(caught.value)


def test_herd_extensions_travel_in_extra_body(client: openai.OpenAI, model_name: str) -> None:
    reply = client.chat.completions.create(
        model=model_name, messages=[{"role": "user", "content": "Hi"}], max_tokens=4,
        extra_body={"num_ctx": 2048, "keep_alive": "10m", "top_k": 1})
    assert reply.choices[0].message.content is not None
