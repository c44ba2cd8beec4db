"""The client libraries users point at Herd, used as they use them: LangChain, LlamaIndex, LiteLLM."""

from __future__ import annotations

import asyncio

import pytest

from tests.stack import Stack

MODEL = "smollm2:135m"
QUESTION = "What is the capital of France? Answer in one sentence."


def test_langchain_chat_ollama_invoke_and_stream(herd: Stack) -> None:
    from langchain_ollama import ChatOllama

    llm = ChatOllama(model=MODEL, base_url=herd.base_url, temperature=0, num_predict=24)
    reply = llm.invoke(QUESTION)
    assert isinstance(reply.content, str) and reply.content
    assert reply.usage_metadata and reply.usage_metadata["output_tokens"] > 0
    streamed = "".join(str(chunk.content) for chunk in llm.stream(QUESTION))
    assert streamed == reply.content


def test_langchain_chat_openai_invoke_and_stream(herd: Stack) -> None:
    from langchain_openai import ChatOpenAI

    llm = ChatOpenAI(model=MODEL, base_url=herd.base_url + "/v1", api_key="unused",  # type: ignore[arg-type]
                     temperature=0, max_tokens=24, max_retries=0)  # type: ignore[call-arg]
    reply = llm.invoke(QUESTION)
    assert isinstance(reply.content, str) and reply.content
    streamed = "".join(str(chunk.content) for chunk in llm.stream(QUESTION))
    assert streamed == reply.content


def test_llamaindex_ollama_chat_complete_stream_async(herd: Stack) -> None:
    from llama_index.core.llms import ChatMessage
    from llama_index.llms.ollama import Ollama

    llm = Ollama(model=MODEL, base_url=herd.base_url, request_timeout=120, temperature=0,
                 additional_kwargs={"num_predict": 24})
    completed = llm.complete(QUESTION)
    assert completed.text
    streamed = "".join(part.delta or "" for part in llm.stream_complete(QUESTION))
    assert streamed == completed.text
    chatted = llm.chat([ChatMessage(role="user", content=QUESTION)])
    assert chatted.message.content
    answer = asyncio.run(llm.achat([ChatMessage(role="user", content=QUESTION)]))
    assert answer.message.content == chatted.message.content


def test_llamaindex_openai_like(herd: Stack) -> None:
    from llama_index.llms.openai_like import OpenAILike

    llm = OpenAILike(model=MODEL, api_base=herd.base_url + "/v1", api_key="unused", is_chat_model=True,
                     temperature=0, max_tokens=24, max_retries=0)
    assert llm.complete(QUESTION).text


@pytest.mark.parametrize("provider", ["ollama", "ollama_chat", "openai"])
def test_litellm_completion_and_streaming(herd: Stack, provider: str) -> None:
    import litellm

    base = herd.base_url + "/v1" if provider == "openai" else herd.base_url
    kwargs = {"model": f"{provider}/{MODEL}", "api_base": base, "api_key": "unused", "temperature": 0,
              "max_tokens": 16, "messages": [{"role": "user", "content": QUESTION}]}
    reply = litellm.completion(**kwargs)
    text = reply.choices[0].message.content
    assert text
    streamed = "".join(chunk.choices[0].delta.content or "" for chunk in litellm.completion(stream=True, **kwargs))
    assert streamed == text


def test_langchain_embeddings_both_dialects(herd: Stack) -> None:
    from langchain_ollama import OllamaEmbeddings
    from langchain_openai import OpenAIEmbeddings

    texts = ["The cat sat on the mat.", "Stock markets fell sharply."]
    native = OllamaEmbeddings(model=MODEL, base_url=herd.base_url)
    compatible = OpenAIEmbeddings(model=MODEL, base_url=herd.base_url + "/v1", api_key="unused",  # type: ignore[arg-type]
                                  check_embedding_ctx_length=False, max_retries=0)
    for embedder in (native, compatible):
        vectors = embedder.embed_documents(texts)
        assert len(vectors) == 2 and len(vectors[0]) == 576
        query = embedder.embed_query(texts[0])
        assert sum(a * b for a, b in zip(query, vectors[0], strict=True)) > 0.99
