"""A conversation longer than the context loses its oldest whole messages, as in Ollama: the
system message and the last message stay, and as many of the newest messages as fit. Judged by
the clients (the ollama client, the openai SDK) against a prompt built here independently:
Ollama's own backward walk over the messages, the demo's TEMPLATE as `herd show` prints it,
and the model's tokenizer."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import ollama
import openai
import pytest

from herd.chat_prompt import render_ollama_template
from herd.demo import demo_gguf
from tests.stack import Stack
from worker.llama_model import LoadedWeights

NUM_CTX = 256
SYSTEM = "You are a pirate. Always answer like a pirate."


def _conversation(turns: int) -> list[dict[str, str]]:
    messages = [{"role": "system", "content": SYSTEM}]
    for i in range(turns):
        messages.append({"role": "user", "content": f"Question {i}: what comes after {i}?"})
        messages.append({"role": "assistant", "content": f"Arr, {i + 1} comes after {i}, matey."})
    messages.append({"role": "user", "content": "And what comes after 99?"})
    return messages


@pytest.fixture(scope="module")
def tokenizer() -> Iterator[LoadedWeights]:
    weights = LoadedWeights(str(demo_gguf()), vocab_only=True)
    yield weights
    weights.free()


@pytest.fixture(scope="module")
def expected_prompt_tokens(herd: Stack, model_name: str, tokenizer: LoadedWeights) -> int:
    """Ollama's chatPrompt: from the newest message back, keep each older one while the prompt
    (with the system messages of the dropped part) still fits num_ctx."""
    template = herd.herd("show", model_name, "--template").stdout
    messages = _conversation(30)

    def tokens(start: int) -> int:
        kept = [m for m in messages[:start] if m["role"] == "system"] + messages[start:]
        return len(tokenizer.tokenize(render_ollama_template(template, kept)))

    assert tokens(0) > NUM_CTX
    start = len(messages) - 1
    while start > 0 and tokens(start - 1) <= NUM_CTX:
        start -= 1
    assert 3 < start < len(messages) - 3  # a real cut, in the middle of the conversation
    return tokens(start)


def test_ollama_client_chat_keeps_the_newest_messages_that_fit(herd: Stack, model_name: str,
                                                               expected_prompt_tokens: int) -> None:
    client = ollama.Client(host=herd.base_url)
    reply = client.chat(model=model_name, messages=_conversation(30),
                        options={"num_ctx": NUM_CTX, "num_predict": 4, "temperature": 0})
    assert reply.done and reply.prompt_eval_count == expected_prompt_tokens


def test_openai_sdk_chat_keeps_the_newest_messages_that_fit(herd: Stack, model_name: str,
                                                            expected_prompt_tokens: int) -> None:
    client = openai.OpenAI(base_url=herd.base_url + "/v1", api_key="unused", _strict_response_validation=True)
    messages: Any = _conversation(30)
    reply = client.chat.completions.create(model=model_name, messages=messages, max_tokens=4, temperature=0,
                                           extra_body={"num_ctx": NUM_CTX})
    assert reply.usage is not None and reply.usage.prompt_tokens == expected_prompt_tokens


def test_truncate_false_never_drops_messages(herd: Stack, model_name: str) -> None:
    body = {"model": model_name, "messages": _conversation(30), "stream": False, "truncate": False,
            "options": {"num_ctx": NUM_CTX, "num_predict": 4}}
    reply = httpx.post(herd.base_url + "/api/chat", json=body, timeout=120)
    assert reply.status_code == 400 and reply.json() == {"error": "the input length exceeds the context length"}


def test_a_conversation_that_fits_is_sent_whole(herd: Stack, model_name: str, tokenizer: LoadedWeights) -> None:
    template = herd.herd("show", model_name, "--template").stdout
    messages = _conversation(2)
    whole = len(tokenizer.tokenize(render_ollama_template(template, messages)))
    reply = ollama.Client(host=herd.base_url).chat(model=model_name, messages=messages,
                                                   options={"num_ctx": NUM_CTX, "num_predict": 2})
    assert reply.prompt_eval_count == whole
