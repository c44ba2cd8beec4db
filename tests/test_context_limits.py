"""Ollama's `truncate` and `shift` through the HTTP API, on the real stack and model."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.stack import Stack

TOO_LONG = "the input length exceeds the context length"  # Ollama's text
LONG = f"Summarize this: {'word ' * 600} The secret is 42."  # far over the 128 cells asked for
COUNTING = "1, 2, 3, 4, 5, 6,"  # raw: greedy counting never samples end-of-text


@pytest.fixture(scope="module")
def http(herd: Stack) -> httpx.Client:
    return httpx.Client(base_url=herd.base_url, timeout=300)


def generate(http: httpx.Client, model: str, prompt: str, options: dict[str, Any], **fields: Any) -> httpx.Response:
    body = {"model": model, "prompt": prompt, "stream": False, "options": {"temperature": 0, **options}, **fields}
    return http.post("/api/generate", json=body)


def chat(http: httpx.Client, model: str, content: str, options: dict[str, Any], **fields: Any) -> httpx.Response:
    body = {"model": model, "messages": [{"role": "user", "content": content}], "stream": False,
            "options": {"temperature": 0, **options}, **fields}
    return http.post("/api/chat", json=body)


@pytest.mark.parametrize("call", [generate, chat])
def test_a_prompt_longer_than_num_ctx_is_truncated_by_default(http: httpx.Client, model_name: str, call: Any) -> None:
    reply = call(http, model_name, LONG, {"num_ctx": 128, "num_predict": 12})
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["done"] is True and 0 < body["prompt_eval_count"] < 128
    assert body["eval_count"] > 0


@pytest.mark.parametrize("call", [generate, chat])
def test_truncate_false_refuses_a_prompt_longer_than_num_ctx(http: httpx.Client, model_name: str, call: Any) -> None:
    reply = call(http, model_name, LONG, {"num_ctx": 128, "num_predict": 12}, truncate=False)
    assert reply.status_code == 400
    assert reply.json() == {"error": TOO_LONG}


def test_truncate_false_still_answers_a_prompt_that_fits(http: httpx.Client, model_name: str) -> None:
    reply = generate(http, model_name, "Hello", {"num_ctx": 128, "num_predict": 4}, truncate=False)
    assert reply.status_code == 200 and reply.json()["eval_count"] == 4


def test_shift_by_default_generates_past_num_ctx_until_num_predict(http: httpx.Client, model_name: str) -> None:
    reply = generate(http, model_name, COUNTING, {"num_ctx": 64, "num_predict": 100}, raw=True)
    body = reply.json()
    assert body["done_reason"] == "length" and body["eval_count"] == 100
    assert body["prompt_eval_count"] + body["eval_count"] > 64


def test_shift_false_stops_at_num_ctx(http: httpx.Client, model_name: str) -> None:
    reply = generate(http, model_name, COUNTING, {"num_ctx": 64, "num_predict": 100}, raw=True, shift=False)
    body = reply.json()
    assert body["done_reason"] == "length" and body["eval_count"] < 100
    assert body["prompt_eval_count"] + body["eval_count"] == 64 + 1  # the last token needs no cell


def test_chat_shift_false_stops_at_num_ctx(http: httpx.Client, model_name: str) -> None:
    reply = chat(http, model_name, "Count from 1 to 100.", {"num_ctx": 64, "num_predict": 100}, shift=False)
    body = reply.json()
    assert body["done_reason"] == "length" and body["eval_count"] < 100


def test_openai_routes_truncate_as_ollama_does(http: httpx.Client, model_name: str) -> None:
    """Ollama's OpenAI layer leaves truncate and shift unset, so both are on."""
    reply = http.post("/v1/chat/completions", json={"model": model_name, "max_tokens": 8, "temperature": 0,
                                                    "num_ctx": 128, "messages": [{"role": "user", "content": LONG}]})
    assert reply.status_code == 200, reply.text
    assert 0 < reply.json()["usage"]["prompt_tokens"] < 128
