"""Fields Herd cannot honour are 400s naming them, through the clients that send them; the
harmless values of the same fields (think false, n 1, modalities ["text"]) are accepted."""

from __future__ import annotations

from typing import Any

import httpx
import ollama
import openai
import pytest

from tests.stack import Stack

QUESTION: list[Any] = [{"role": "user", "content": "Hi"}]


@pytest.fixture(scope="module")
def client(herd: Stack) -> openai.OpenAI:
    return openai.OpenAI(base_url=herd.base_url + "/v1", api_key="unused", _strict_response_validation=True,
                         max_retries=0)


@pytest.fixture(scope="module")
def ollama_client(herd: Stack) -> ollama.Client:
    return ollama.Client(host=herd.base_url)


CHAT_REFUSALS: list[tuple[dict[str, Any], str, str]] = [
    ({"n": 2}, "n", "'n' other than 1"),
    ({"reasoning_effort": "high"}, "reasoning_effort", '"smollm2:135m" does not support thinking'),
    ({"modalities": ["text", "audio"]}, "modalities", "only the 'text' modality"),
    ({"service_tier": "flex"}, "service_tier", "'service_tier' must be"),
]


@pytest.mark.parametrize(("extra", "param", "message"), CHAT_REFUSALS)
def test_openai_chat_refusals_name_the_field(client: openai.OpenAI, model_name: str, extra: dict[str, Any],
                                            param: str, message: str) -> None:
    with pytest.raises(openai.BadRequestError) as refused:
        client.chat.completions.create(model=model_name, messages=QUESTION, max_tokens=2, **extra)
    assert refused.value.status_code == 400
    assert refused.value.body["param"] == param  # type: ignore[index]
    assert message in refused.value.message


def test_openai_chat_accepts_the_harmless_values(client: openai.OpenAI, model_name: str) -> None:
    reply = client.chat.completions.create(model=model_name, messages=QUESTION, max_tokens=2, n=1,
                                           modalities=["text"], service_tier="auto", store=False,
                                           metadata={"team": "search"}, reasoning_effort="none")
    assert reply.choices[0].finish_reason in ("stop", "length")


@pytest.mark.parametrize(("extra", "param"), [({"n": 3}, "n"), ({"echo": True}, "echo"), ({"best_of": 2}, "best_of")])
def test_openai_completion_refusals_name_the_field(client: openai.OpenAI, model_name: str, extra: dict[str, Any],
                                                  param: str) -> None:
    with pytest.raises(openai.BadRequestError) as refused:
        client.completions.create(model=model_name, prompt="Hi", max_tokens=2, **extra)
    assert refused.value.body["param"] == param  # type: ignore[index]


def test_ollama_think_true_is_a_400_and_false_is_fine(ollama_client: ollama.Client, model_name: str) -> None:
    for call in (lambda think: ollama_client.generate(model=model_name, prompt="Hi", think=think,
                                                      options={"num_predict": 2}),
                 lambda think: ollama_client.chat(model=model_name, messages=QUESTION, think=think,
                                                  options={"num_predict": 2})):
        with pytest.raises(ollama.ResponseError) as refused:
            call(True)
        assert refused.value.status_code == 400
        assert refused.value.error == '"smollm2:135m" does not support thinking'
        with pytest.raises(ollama.ResponseError):
            call("high")
        assert call(False).done is True


def test_ollama_context_is_a_400_naming_it(herd: Stack, model_name: str) -> None:
    answer = httpx.post(herd.base_url + "/api/generate", timeout=30,
                        json={"model": model_name, "prompt": "Hi", "context": [1, 2, 3], "stream": False})
    assert answer.status_code == 400 and "'context'" in answer.json()["error"]
