"""Embeddings on the real stack: /api/embed, /api/embeddings and /v1/embeddings, through the
`ollama` client, the `openai` SDK with strict validation, and raw HTTP."""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence
from pathlib import Path

import httpx
import ollama
import openai
import pytest

from tests.stack import Stack

N_EMBD = 576  # SmolLM2-135M's hidden size
CAT = "The cat sat on the mat"
RUG = "A cat is sitting on a rug"
STOCKS = "Stock markets fell sharply"


def norm(vector: Sequence[float]) -> float:
    return math.sqrt(sum(x * x for x in vector))


def cosine(a: Sequence[float], b: Sequence[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True)) / (norm(a) * norm(b))


@pytest.fixture(scope="module")
def client(herd: Stack) -> ollama.Client:
    return ollama.Client(host=herd.base_url)


@pytest.fixture(scope="module")
def sdk(herd: Stack) -> openai.OpenAI:
    return openai.OpenAI(base_url=herd.base_url + "/v1", api_key="unused", _strict_response_validation=True,
                         max_retries=0)


def embed_one(client: ollama.Client, model: str, text: str) -> Sequence[float]:
    return client.embed(model=model, input=text).embeddings[0]


def test_embed_one_input_is_a_unit_vector(client: ollama.Client, model_name: str) -> None:
    reply = client.embed(model=model_name, input=CAT)
    assert reply.model == model_name
    assert len(reply.embeddings) == 1
    assert len(reply.embeddings[0]) == N_EMBD
    assert norm(reply.embeddings[0]) == pytest.approx(1.0, abs=1e-6)
    assert reply.prompt_eval_count and reply.prompt_eval_count > 0
    assert reply.total_duration and reply.total_duration > 0


def test_a_list_comes_back_in_order_and_as_each_alone(client: ollama.Client, model_name: str) -> None:
    reply = client.embed(model=model_name, input=[CAT, STOCKS, CAT])
    together = reply.embeddings
    assert len(together) == 3
    assert all(len(v) == N_EMBD and norm(v) == pytest.approx(1.0, abs=1e-6) for v in together)
    alone = [embed_one(client, model_name, text) for text in (CAT, STOCKS)]
    # One input's vector does not depend on what else shared its batch.
    assert cosine(together[0], together[2]) == pytest.approx(1.0, abs=1e-6)
    assert cosine(together[0], alone[0]) == pytest.approx(1.0, abs=1e-6)
    assert cosine(together[1], alone[1]) == pytest.approx(1.0, abs=1e-6)
    assert cosine(together[0], together[1]) < 0.99
    single = client.embed(model=model_name, input=CAT).prompt_eval_count
    assert reply.prompt_eval_count and single and reply.prompt_eval_count > 2 * single


def test_dimensions_cut_the_vector_and_normalize_it_again(client: ollama.Client, model_name: str) -> None:
    full = embed_one(client, model_name, CAT)
    cut = client.embed(model=model_name, input=CAT, dimensions=32).embeddings[0]
    assert len(cut) == 32
    assert norm(cut) == pytest.approx(1.0, abs=1e-6)
    head = full[:32]
    assert list(cut) == pytest.approx([x / norm(head) for x in head], abs=1e-6)


def test_closer_meanings_are_closer_vectors(client: ollama.Client, model_name: str) -> None:
    cat, rug, stocks = client.embed(model=model_name, input=[CAT, RUG, STOCKS]).embeddings
    assert cosine(cat, rug) > cosine(cat, stocks)
    assert cosine(cat, rug) > cosine(rug, stocks)


def test_legacy_embeddings_are_not_normalized(client: ollama.Client, model_name: str) -> None:
    legacy = client.embeddings(model=model_name, prompt=CAT).embedding
    assert len(legacy) == N_EMBD
    assert abs(norm(legacy) - 1.0) > 0.01
    assert cosine(legacy, embed_one(client, model_name, CAT)) == pytest.approx(1.0, abs=1e-6)


def test_empty_input_only_loads_the_model(client: ollama.Client, model_name: str) -> None:
    assert client.embed(model=model_name, input=[]).embeddings == []
    assert client.embed(model=model_name, input="").embeddings == []
    assert client.embeddings(model=model_name, prompt="").embedding == []
    assert model_name in [m.model for m in client.ps().models]


def test_truncate(client: ollama.Client, sdk: openai.OpenAI, model_name: str) -> None:
    text = " ".join(["word"] * 40)
    cut = client.embed(model=model_name, input=text, options={"num_ctx": 8})
    assert cut.prompt_eval_count == 8
    with pytest.raises(ollama.ResponseError) as refused:
        client.embed(model=model_name, input=text, truncate=False, options={"num_ctx": 8})
    assert refused.value.status_code == 400
    assert refused.value.error == "the input length exceeds the context length"
    # Longer than the whole context a worker gives a sequence: refused before any decoding.
    huge = " ".join(["word"] * 6000)
    with pytest.raises(ollama.ResponseError) as too_long:
        client.embed(model=model_name, input=[CAT, huge], truncate=False)
    assert too_long.value.status_code == 400
    with pytest.raises(openai.BadRequestError) as openai_refused:
        sdk.embeddings.create(model=model_name, input=huge, extra_body={"truncate": False})
    assert openai_refused.value.status_code == 400
    assert "exceeds the context length" in openai_refused.value.message


def test_openai_float_and_base64_decode_to_the_same_vectors(sdk: openai.OpenAI, client: ollama.Client, herd: Stack,
                                                            model_name: str) -> None:
    as_floats = sdk.embeddings.create(model=model_name, input=CAT, encoding_format="float")
    assert as_floats.object == "list"
    assert as_floats.model == model_name
    assert [(d.object, d.index) for d in as_floats.data] == [("embedding", 0)]
    assert as_floats.usage.prompt_tokens > 0
    assert as_floats.usage.total_tokens == as_floats.usage.prompt_tokens
    assert as_floats.data[0].embedding == pytest.approx(embed_one(client, model_name, CAT), abs=1e-9)
    # Without encoding_format the SDK asks for base64 and decodes it itself. openai 2.x checks the
    # body against `embedding: List[float]` before decoding, so strict validation would reject
    # base64 from any server, OpenAI's included: this call goes through a lenient client.
    lenient = openai.OpenAI(base_url=herd.base_url + "/v1", api_key="unused", max_retries=0)
    raw = lenient.embeddings.with_raw_response.create(model=model_name, input=CAT)
    assert isinstance(raw.http_response.json()["data"][0]["embedding"], str)
    from_base64 = raw.parse()
    assert len(from_base64.data[0].embedding) == N_EMBD
    # base64 carries float32: the same vector to float32 precision
    assert list(from_base64.data[0].embedding) == pytest.approx(as_floats.data[0].embedding, abs=1e-7)


def test_openai_list_comes_back_in_order(sdk: openai.OpenAI, client: ollama.Client, model_name: str) -> None:
    reply = sdk.embeddings.create(model=model_name, input=[STOCKS, CAT, RUG, CAT], dimensions=64,
                                  encoding_format="float")
    assert [d.index for d in reply.data] == [0, 1, 2, 3]
    assert all(len(d.embedding) == 64 and norm(d.embedding) == pytest.approx(1.0, abs=1e-6) for d in reply.data)
    expected = client.embed(model=model_name, input=[STOCKS, CAT, RUG], dimensions=64).embeddings
    for got, want in zip(reply.data, [*expected, expected[1]], strict=True):
        assert cosine(got.embedding, want) == pytest.approx(1.0, abs=1e-6)


def test_openai_token_arrays_embed_like_their_text(sdk: openai.OpenAI, model_name: str, model_path: Path) -> None:
    pytest.importorskip("llama_cpp")
    from worker.llama_model import LoadedWeights

    weights = LoadedWeights(str(model_path))
    try:
        cat_tokens, stocks_tokens = weights.tokenize(CAT), weights.tokenize(STOCKS)
    finally:
        weights.free()
    by_text = sdk.embeddings.create(model=model_name, input=[CAT, STOCKS], encoding_format="float").data
    one = sdk.embeddings.create(model=model_name, input=cat_tokens, encoding_format="float")
    many = sdk.embeddings.create(model=model_name, input=[cat_tokens, stocks_tokens], encoding_format="float")
    assert one.usage.prompt_tokens == len(cat_tokens)
    assert len(one.data) == 1
    assert cosine(one.data[0].embedding, by_text[0].embedding) == pytest.approx(1.0, abs=1e-6)
    assert [d.index for d in many.data] == [0, 1]
    for got, want in zip(many.data, by_text, strict=True):
        assert cosine(got.embedding, want.embedding) == pytest.approx(1.0, abs=1e-6)


def test_unknown_model_is_404_in_both_dialects(client: ollama.Client, sdk: openai.OpenAI) -> None:
    with pytest.raises(ollama.ResponseError) as ollama_missing:
        client.embed(model="no-such-model", input=CAT)
    assert ollama_missing.value.status_code == 404
    assert ollama_missing.value.error == "model 'no-such-model' not found"
    with pytest.raises(ollama.ResponseError) as legacy_missing:
        client.embeddings(model="no-such-model", prompt=CAT)
    assert legacy_missing.value.status_code == 404
    with pytest.raises(openai.NotFoundError) as openai_missing:
        sdk.embeddings.create(model="no-such-model", input=CAT)
    assert openai_missing.value.body == {"message": "model 'no-such-model' not found", "type": "not_found_error",
                                         "param": "model", "code": None}


@pytest.mark.parametrize("body", [{"input": []}, {"input": [1.5]}, {"input": [[]]}, {"input": ["a", 1]},
                                  {"input": True}, {"input": [-1]}])
def test_openai_bad_input_is_400_naming_it(herd: Stack, model_name: str, body: dict[str, object]) -> None:
    reply = httpx.post(herd.base_url + "/v1/embeddings", json={"model": model_name, **body}, timeout=60)
    assert reply.status_code == 400
    assert reply.json()["error"]["param"] == "input"


@pytest.mark.parametrize(("body", "field"), [({"input": 5}, "input"), ({"input": "x", "dimensions": -1}, "dimensions"),
                                           ({"input": "x", "unknown": 1}, "unknown"),
                                           ({"input": "x", "options": {"nope": 1}}, "nope")])
def test_ollama_bad_fields_are_400_naming_them(herd: Stack, model_name: str, body: dict[str, object],
                                               field: str) -> None:
    reply = httpx.post(herd.base_url + "/api/embed", json={"model": model_name, **body}, timeout=60)
    assert reply.status_code == 400
    assert field in reply.json()["error"]


def test_embeddings_and_generation_share_the_model(client: ollama.Client, model_name: str) -> None:
    answers: dict[str, object] = {}

    def chat() -> None:
        answers["chat"] = client.chat(model=model_name, messages=[{"role": "user", "content": "Say hi."}],
                                      options={"temperature": 0, "num_predict": 12})

    thread = threading.Thread(target=chat)
    thread.start()
    vectors = client.embed(model=model_name, input=[CAT, RUG]).embeddings
    thread.join(timeout=120)
    reply = answers["chat"]
    assert isinstance(reply, ollama.ChatResponse) and reply.message.content
    assert len(vectors) == 2
    assert cosine(vectors[0], embed_one(client, model_name, CAT)) == pytest.approx(1.0, abs=1e-6)


def test_an_input_longer_than_a_batch_is_pooled_over_all_of_it(model_path: Path) -> None:
    """The embedder decodes at most one batch of tokens a step, so a long input goes through
    several steps; its vector is still the one a single decode of the whole input gives."""
    pytest.importorskip("llama_cpp")
    from worker.embedder import Embedded, Embedder
    from worker.llama_model import LoadedWeights

    text = "The quick brown fox jumps over the lazy dog while the cat sleeps on a warm windowsill."
    weights = LoadedWeights(str(model_path))
    whole = Embedder(weights, ctx_len=128, n_threads=2, n_batch=128)
    pieces = Embedder(weights, ctx_len=128, n_threads=2, n_batch=8)
    try:
        answers: dict[str, list[Embedded]] = {}
        for name, embedder in (("whole", whole), ("pieces", pieces)):
            embedder.add(name, [text, STOCKS])
            steps, events = 0, []
            while embedder.has_work:
                events += embedder.step()
                steps += 1
            assert all(isinstance(e, Embedded) for e in events)
            answers[name] = [e for e in events if isinstance(e, Embedded)]
            assert steps == (1 if embedder is whole else math.ceil(answers[name][0].prompt_eval_count / 8))
        (one,), (many,) = answers["whole"], answers["pieces"]
        assert one.prompt_eval_count == many.prompt_eval_count > 16
        for a, b in zip(one.vectors, many.vectors, strict=True):
            assert cosine(a, b) == pytest.approx(1.0, abs=1e-6)
        pieces.add("gone", [text])
        pieces.step()
        pieces.cancel("gone")
        assert not pieces.has_work
    finally:
        whole.close()
        pieces.close()
        weights.free()
