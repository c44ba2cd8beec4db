"""Conversations cut to the context as Ollama cuts them: oldest whole messages first, system
messages kept, the last message always there; counted with the model's own tokenizer."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from types import SimpleNamespace
from typing import Any, cast

import pytest

from gateway.catalog import ResolvedModel
from gateway.prompt_fit import ConversationFitter, TokenCounter, fit_conversation
from herd.demo import demo_gguf
from herd.protocol import Job, SamplingOptions

SYSTEM = {"role": "system", "content": "You are a pirate. Always answer like a pirate."}


def _conversation(turns: int) -> list[dict[str, str]]:
    messages = [SYSTEM]
    for i in range(turns):
        messages.append({"role": "user", "content": f"Question {i}: tell me about the number {i} in a sentence."})
        messages.append({"role": "assistant", "content": f"Answer {i}: the number {i} comes after {i - 1}."})
    messages.append({"role": "user", "content": "And now the last question?"})
    return messages


def _render(messages: list[dict[str, str]]) -> Callable[[int], str]:
    def render(drop: int) -> str:
        kept = [m for m in messages[:drop] if m["role"] == "system"] + messages[drop:]
        return "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in kept) + "<|im_start|>assistant\n"
    return render


@pytest.fixture(scope="module")
def counter() -> Iterator[TokenCounter]:
    counter = TokenCounter()
    yield counter
    counter.close()


async def test_a_conversation_that_fits_is_not_even_counted() -> None:
    async def never(_text: str) -> int:
        raise AssertionError("counted a prompt that surely fits")

    messages = _conversation(2)
    render = _render(messages)
    assert await fit_conversation(render, range(len(messages)), 4096, never) == render(0)


async def test_the_oldest_messages_go_first_and_the_system_message_stays(counter: TokenCounter) -> None:
    messages = _conversation(30)
    render = _render(messages)
    path = str(demo_gguf())

    async def count(text: str) -> int:
        return await counter.count(path, text)

    limit = 300
    assert await count(render(0)) > limit
    prompt = await fit_conversation(render, range(len(messages)), limit, count)
    assert await count(prompt) <= limit
    assert prompt.startswith("<|im_start|>system\nYou are a pirate.")
    assert "And now the last question?" in prompt
    assert "Question 0:" not in prompt and "Answer 29:" in prompt
    # As many messages as fit: one more (the newest one dropped) would not.
    kept = prompt.count("<|im_start|>") - 2  # not the system message, not the answer's opener
    drop = len(messages) - kept
    assert render(drop) == prompt
    assert await count(render(drop - 1)) > limit


async def test_the_last_message_stays_even_when_it_alone_is_too_long(counter: TokenCounter) -> None:
    messages = [SYSTEM, {"role": "user", "content": "old"}, {"role": "user", "content": "word " * 400}]
    render = _render(messages)
    path = str(demo_gguf())

    async def count(text: str) -> int:
        return await counter.count(path, text)

    prompt = await fit_conversation(render, range(len(messages)), 100, count)
    assert prompt == render(2)
    assert "old" not in prompt and "pirate" in prompt  # the worker truncates the rest token-wise


def test_the_limit_is_the_context_a_sequence_gets(counter: TokenCounter) -> None:
    fitter = ConversationFitter(4096, counter)

    def job(num_ctx: int = 0, truncate: bool = True) -> Job:
        return Job(id="j", model="m", digest="d", prompt="", options=SamplingOptions(num_ctx=num_ctx),
                   truncate=truncate)

    def limit(model: ResolvedModel, asked: Job) -> int | None:
        fit = fitter.for_job(model, asked)
        return None if fit is None else fit.limit

    model = _model(go_template="", jinja="", trained=8192)
    assert limit(model, job()) == 4096
    assert limit(model, job(num_ctx=512)) == 512
    assert limit(model, job(num_ctx=100_000)) == 4096
    assert limit(_model(go_template="", jinja="", trained=2048), job()) == 2048  # as the worker caps it
    assert limit(_model(go_template="", jinja="", trained=None), job()) == 4096
    assert limit(model, job(truncate=False)) is None  # too long is then an error, as in Ollama
    assert ConversationFitter(4096, None).for_job(model, job()) is None


def _model(*, go_template: str, jinja: str, trained: int | None = None) -> ResolvedModel:
    record = SimpleNamespace(system="", messages=[], template=go_template, weights_path="w")
    gguf = SimpleNamespace(chat_template=jinja, context_length=trained)
    return ResolvedModel(cast(Any, record), cast(Any, gguf))


def test_a_jinja_template_is_cut_only_before_a_user_message() -> None:
    """Ollama (Go templates) may start the kept part anywhere; many GGUF Jinja templates raise
    unless roles alternate from a user's message, so there the cut lands on one."""
    messages = [*_conversation(3)[1:], {"role": "tool", "content": "42"}]  # no system message
    roles = [m["role"] for m in messages]
    go = _model(go_template="{{ .Prompt }}", jinja="")
    assert go.cut_points(messages) == list(range(len(messages)))
    jinja = _model(go_template="", jinja="{{ messages }}")
    cuts = jinja.cut_points(messages)
    assert cuts[0] == 0 and cuts[-1] == len(messages) - 1
    assert all(roles[i] == "user" for i in cuts[1:-1]) and len(cuts) == 2 + roles[1:-1].count("user")
