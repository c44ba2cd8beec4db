"""The Ollama API as the `ollama` Python client sees it."""

from __future__ import annotations

import ollama
import pytest

from herd.store.modelfile import parse_modelfile
from herd.store.store import ModelStore
from tests.stack import Stack

GREEDY = {"temperature": 0, "seed": 7, "num_predict": 24}


def streamed(parts: list[ollama.GenerateResponse]) -> str:
    """The text of a streamed generate: every part carries a response, if only an empty one."""
    assert all(p.response is not None for p in parts)
    return "".join(p.response or "" for p in parts)


@pytest.fixture(scope="module")
def client(herd: Stack) -> ollama.Client:
    return ollama.Client(host=herd.base_url)


def test_chat_answers_with_ollama_metrics(client: ollama.Client, model_name: str) -> None:
    reply = client.chat(model=model_name, messages=[{"role": "user", "content": "Say hello."}], options=GREEDY)
    assert reply.message.role == "assistant"
    assert reply.message.content
    assert reply.done is True
    assert reply.done_reason in {"stop", "length"}
    assert reply.prompt_eval_count and reply.prompt_eval_count > 0
    assert reply.eval_count and 0 < reply.eval_count <= 24
    for duration in (reply.total_duration, reply.prompt_eval_duration, reply.eval_duration):
        assert duration and duration > 0
    assert reply.total_duration >= reply.eval_duration  # type: ignore[operator]


def test_streamed_chat_equals_unstreamed(client: ollama.Client, model_name: str) -> None:
    messages = [{"role": "user", "content": "Tell me about cats in one sentence."}]
    whole = client.chat(model=model_name, messages=messages, options=GREEDY)
    parts = list(client.chat(model=model_name, messages=messages, options=GREEDY, stream=True))
    assert "".join(p.message.content or "" for p in parts) == whole.message.content
    assert [p.done for p in parts].count(True) == 1
    assert parts[-1].done and parts[-1].eval_count == whole.eval_count


def test_generate_stream_and_not(client: ollama.Client, model_name: str) -> None:
    whole = client.generate(model=model_name, prompt="Why is the sky blue?", options=GREEDY)
    assert whole.response
    parts = list(client.generate(model=model_name, prompt="Why is the sky blue?", options=GREEDY, stream=True))
    assert streamed(parts) == whole.response
    assert parts[-1].done_reason == whole.done_reason


def test_raw_generate_skips_the_template(client: ollama.Client, model_name: str) -> None:
    templated = client.generate(model=model_name, prompt="1, 2, 3,", options=GREEDY)
    raw = client.generate(model=model_name, prompt="1, 2, 3,", raw=True, options=GREEDY)
    assert raw.prompt_eval_count is not None and templated.prompt_eval_count is not None
    assert raw.prompt_eval_count < templated.prompt_eval_count


def test_list_and_show(client: ollama.Client, model_name: str) -> None:
    names = [m.model for m in client.list().models]
    assert model_name in names
    listed = next(m for m in client.list().models if m.model == model_name)
    assert listed.size and listed.size > 90_000_000
    assert listed.details and listed.details.format == "gguf"
    assert listed.details.quantization_level == "Q4_1"
    shown = client.show(model_name)
    assert shown.modelinfo and shown.modelinfo["general.architecture"] == "llama"
    assert shown.template and "im_start" in shown.template
    assert shown.modelfile and "FROM" in shown.modelfile


def test_delete_removes_a_model_but_keeps_shared_blobs(client: ollama.Client, herd: Stack,
                                                       model_name: str) -> None:
    store = ModelStore(herd.models)
    source = store.get(model_name)
    assert source is not None
    store.create("throwaway:1", parse_modelfile(f"FROM {model_name}\nPARAMETER temperature 0.1\n"),
                 base_dir=herd.root)
    assert "throwaway:1" in [m.model for m in client.list().models]
    client.delete("throwaway:1")
    assert "throwaway:1" not in [m.model for m in client.list().models]
    assert source.weights_path.exists()  # the other model still needs it
    assert client.chat(model=model_name, messages=[{"role": "user", "content": "ok"}],
                       options={"num_predict": 2}).message is not None


def test_unknown_model_is_a_404(client: ollama.Client) -> None:
    with pytest.raises(ollama.ResponseError) as caught:
        client.chat(model="missing-model", messages=[{"role": "user", "content": "hi"}])
    assert caught.value.status_code == 404
    assert "missing-model" in caught.value.error
    with pytest.raises(ollama.ResponseError) as caught:
        client.delete("missing-model")
    assert caught.value.status_code == 404


def test_empty_chat_loads_the_model(client: ollama.Client, model_name: str) -> None:
    reply = client.chat(model=model_name, messages=[])
    assert reply.done and reply.done_reason == "load"


async def test_async_client_chat_generate_embed_ps(herd: Stack, model_name: str) -> None:
    client = ollama.AsyncClient(host=herd.base_url)
    chat = await client.chat(model=model_name, messages=[{"role": "user", "content": "Say hello."}], options=GREEDY)
    assert chat.done and chat.message.content
    parts = [p async for p in await client.generate(model=model_name, prompt="Why is the sky blue?",
                                                     options=GREEDY, stream=True)]
    assert [p.done for p in parts].count(True) == 1 and streamed(parts)
    whole = await client.generate(model=model_name, prompt="Why is the sky blue?", options=GREEDY)
    assert whole.response == streamed(parts)
    embedded = await client.embed(model=model_name, input=["one", "two"])
    assert len(embedded.embeddings) == 2 and len(embedded.embeddings[0]) == 576
    # The demo weights are loaded (under the name of whichever model loaded them first, as in Ollama).
    running = (await client.ps()).models
    assert running and all(m.size and m.size > 90_000_000 and m.expires_at for m in running)
