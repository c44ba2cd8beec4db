"""Token log probabilities, logit_bias and `user` on the real stack, in both dialects, through
the `openai` SDK (strict response validation), the `ollama` client and raw HTTP."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import ollama
import openai
import pytest

from tests.stack import Stack

MODEL = "smollm2:135m"
QUESTION = [{"role": "user", "content": "What is the capital of France?"}]
PROMPT = "The capital of France is"


@pytest.fixture(scope="module")
def http(herd: Stack) -> httpx.Client:
    return httpx.Client(base_url=herd.base_url, timeout=300)


@pytest.fixture(scope="module")
def sdk(herd: Stack) -> openai.OpenAI:
    return openai.OpenAI(base_url=herd.base_url + "/v1", api_key="unused", _strict_response_validation=True,
                         max_retries=0, timeout=300)


@pytest.fixture(scope="module")
def vocab() -> Iterator[Any]:
    """The demo model's tokenizer, to name token ids for logit_bias."""
    pytest.importorskip("llama_cpp")
    from herd.demo import demo_gguf
    from worker.llama_model import LoadedWeights

    weights = LoadedWeights(str(demo_gguf()))
    yield weights
    weights.free()


def check_greedy_entry(token: str, logprob: float, top: list[Any], n: int) -> None:
    assert logprob <= 0
    assert len(top) == n
    assert [t.logprob for t in top] == sorted((t.logprob for t in top), reverse=True)
    assert top[0].token == token and top[0].logprob == pytest.approx(logprob)  # greedy took the arg max


# -- /v1/chat/completions ---------------------------------------------------------------------


def test_chat_logprobs_with_top_alternatives(sdk: openai.OpenAI) -> None:
    reply = sdk.chat.completions.create(model=MODEL, messages=QUESTION, temperature=0, max_tokens=12,  # type: ignore[arg-type]
                                        logprobs=True, top_logprobs=3)
    choice = reply.choices[0]
    assert choice.logprobs is not None and choice.logprobs.content is not None
    entries = choice.logprobs.content
    assert reply.usage is not None and len(entries) == reply.usage.completion_tokens
    assert "".join(e.token for e in entries) == choice.message.content
    for e in entries:
        check_greedy_entry(e.token, e.logprob, e.top_logprobs, 3)
        assert e.bytes == list(e.token.encode())


def test_streamed_chat_logprobs_come_with_their_text(sdk: openai.OpenAI) -> None:
    kwargs: Any = {"model": MODEL, "messages": QUESTION, "temperature": 0, "max_tokens": 12, "logprobs": True,
                   "top_logprobs": 3}
    whole = sdk.chat.completions.create(**kwargs)
    chunks = [c for c in sdk.chat.completions.create(stream=True, **kwargs) if c.choices]
    streamed = []
    for chunk in chunks:
        delta = chunk.choices[0].delta.content
        if delta:
            logprobs = chunk.choices[0].logprobs
            assert logprobs is not None and logprobs.content
            assert "".join(e.token for e in logprobs.content) == delta
            streamed.extend(logprobs.content)
    assert whole.choices[0].logprobs is not None
    assert [(e.token, e.logprob) for e in streamed] == [(e.token, e.logprob)
                                                        for e in whole.choices[0].logprobs.content or []]


def test_no_logprobs_unless_asked(sdk: openai.OpenAI, http: httpx.Client) -> None:
    reply = sdk.chat.completions.create(model=MODEL, messages=QUESTION, max_tokens=4)  # type: ignore[arg-type]
    assert reply.choices[0].logprobs is None
    raw = http.post("/api/generate", json={"model": MODEL, "prompt": PROMPT, "stream": False,
                                           "options": {"num_predict": 4}}).json()
    assert "logprobs" not in raw


@pytest.mark.parametrize(
    ("extra", "param"),
    [({"logprobs": True, "top_logprobs": 21}, "top_logprobs"), ({"top_logprobs": 2}, "top_logprobs")],
)
def test_bad_chat_logprobs_are_400s(sdk: openai.OpenAI, extra: dict[str, Any], param: str) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        sdk.chat.completions.create(model=MODEL, messages=QUESTION, max_tokens=4, **extra)  # type: ignore[arg-type]
    assert caught.value.body is not None and caught.value.body["param"] == param  # type: ignore[index]


# -- /v1/completions ---------------------------------------------------------------------------


def test_completion_logprobs_in_the_legacy_shape(sdk: openai.OpenAI, herd: Stack) -> None:
    reply = sdk.completions.create(model=MODEL, prompt=PROMPT, temperature=0, max_tokens=8, logprobs=2)
    choice = reply.choices[0]
    lp = choice.logprobs
    assert lp is not None and lp.tokens and lp.token_logprobs and lp.top_logprobs and lp.text_offset
    assert len(lp.tokens) == len(lp.token_logprobs) == len(lp.top_logprobs) == len(lp.text_offset) == 8
    assert "".join(lp.tokens) == choice.text
    # Offsets count from the start of the prompt, as OpenAI's do.
    expected = len(PROMPT)
    for token, offset, logprob, top in zip(lp.tokens, lp.text_offset, lp.token_logprobs, lp.top_logprobs,
                                           strict=True):
        assert offset == expected
        expected += len(token)
        assert logprob <= 0 and len(top) == 2 and max(top.values()) == pytest.approx(logprob)
    # Streamed completions are validated leniently: the SDK types a chunk's finish_reason as never
    # null, but OpenAI streams null until the last chunk (see tests/test_openai_sdk.py).
    lenient = openai.OpenAI(base_url=herd.base_url + "/v1", api_key="unused", max_retries=0)
    stream = lenient.completions.create(model=MODEL, prompt=PROMPT, temperature=0, max_tokens=8, logprobs=2,
                                        stream=True)
    streamed_tokens: list[str] = []
    streamed_offsets: list[int] = []
    for chunk in stream:
        if chunk.choices and chunk.choices[0].logprobs:
            streamed_tokens += chunk.choices[0].logprobs.tokens or []
            streamed_offsets += chunk.choices[0].logprobs.text_offset or []
    assert (streamed_tokens, streamed_offsets) == (lp.tokens, lp.text_offset)


# -- Ollama ------------------------------------------------------------------------------------


def test_ollama_client_chat_logprobs(herd: Stack) -> None:
    client = ollama.Client(host=herd.base_url, timeout=300)
    reply = client.chat(model=MODEL, messages=QUESTION, logprobs=True, top_logprobs=2,
                        options={"temperature": 0, "num_predict": 10})
    assert reply.logprobs is not None and len(reply.logprobs) == reply.eval_count
    assert "".join(e.token for e in reply.logprobs) == reply.message.content
    for e in reply.logprobs:
        check_greedy_entry(e.token, e.logprob, list(e.top_logprobs or []), 2)


def test_ollama_streamed_generate_logprobs_raw(http: httpx.Client) -> None:
    body = {"model": MODEL, "prompt": PROMPT, "logprobs": True, "options": {"temperature": 0, "num_predict": 8}}
    with http.stream("POST", "/api/generate", json=body) as response:
        lines = [json.loads(line) for line in response.iter_lines() if line]
    for line in lines[:-1]:
        entries = line["logprobs"]
        assert "".join(e["token"] for e in entries) == line["response"]
        for e in entries:
            assert set(e) == {"token", "logprob", "bytes"}  # no top_logprobs: none were asked for
            assert e["bytes"] == list(e["token"].encode()) and e["logprob"] <= 0
    assert lines[-1]["done"] and "logprobs" not in lines[-1]
    assert sum(len(line["logprobs"]) for line in lines[:-1]) == lines[-1]["eval_count"]


def test_ollama_top_logprobs_out_of_range_is_a_400(http: httpx.Client) -> None:
    response = http.post("/api/chat", json={"model": MODEL, "messages": QUESTION, "logprobs": True,
                                            "top_logprobs": 21})
    assert response.status_code == 400
    assert response.json() == {"error": "top_logprobs must be between 0 and 20"}


# -- logit_bias and user -----------------------------------------------------------------------


def test_logit_bias_bans_and_forces_tokens(sdk: openai.OpenAI, vocab: Any) -> None:
    kwargs: Any = {"model": MODEL, "messages": QUESTION, "temperature": 0, "max_tokens": 4}
    plain = sdk.chat.completions.create(**kwargs).choices[0].message.content or ""
    first = vocab.tokenize(plain, add_special=False)[0]
    banned = sdk.chat.completions.create(logit_bias={str(first): -100}, **kwargs).choices[0].message.content or ""
    assert not banned.startswith(vocab.token_piece(first).decode())
    forced = vocab.tokenize(" banana", add_special=False)[0]
    reply = sdk.chat.completions.create(logit_bias={str(forced): 100}, **kwargs).choices[0].message.content
    assert reply == vocab.token_piece(forced).decode() * 4


@pytest.mark.parametrize("bias", [{"49152": 1}, {"-1": 1}, {"cat": 1}, {"5": 101}])
def test_bad_logit_bias_is_a_400(sdk: openai.OpenAI, bias: dict[str, int]) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        sdk.chat.completions.create(model=MODEL, messages=QUESTION, max_tokens=4, logit_bias=bias)  # type: ignore[arg-type]
    assert caught.value.body is not None and caught.value.body["param"] == "logit_bias"  # type: ignore[index]


def test_user_is_accepted_and_logged_for_audit(sdk: openai.OpenAI, herd: Stack) -> None:
    reply = sdk.chat.completions.create(model=MODEL, messages=QUESTION, max_tokens=2,  # type: ignore[arg-type]
                                        user="auditor-7f3a")
    assert reply.choices[0].message.content is not None
    assert "auditor-7f3a" in "".join(herd.logs(f"worker{i}") for i in range(len(herd.workers)))
