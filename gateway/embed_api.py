"""Embeddings: Ollama's /api/embed and legacy /api/embeddings, and OpenAI's /v1/embeddings.

An embed job goes through the model's job stream and admission like any generation; the
worker answers with one Embeddings event holding each input's vector as the model pooled
it. What the dialects make of those vectors (L2-normalized, cut to `dimensions`,
little-endian float32 in base64) is done here, in one place.
"""

from __future__ import annotations

import base64
import math
import struct
import time
from collections.abc import Sequence
from typing import Any, Literal

import msgspec
from litestar import Request, Response, post

from gateway.catalog import Catalog
from gateway.errors import ApiError, bad_request, decode_body
from gateway.generation import start
from gateway.jobs import JobQueue, new_job_id
from gateway.options import merge_options
from gateway.requests import keep_alive_seconds
from gateway.wire_ollama import KeepAlive
from herd.protocol import Done, Embeddings, Job

_encode = msgspec.json.Encoder().encode
_MAX_TOKEN_ID = 2**31 - 1

# ---- vector math -------------------------------------------------------------------------


def normalized(vector: Sequence[float]) -> list[float]:
    """The vector scaled to length 1 (a zero vector stays as it is)."""
    norm = math.sqrt(math.fsum(x * x for x in vector))
    return [x / norm for x in vector] if norm > 0 else list(vector)


def shaped(vector: Sequence[float], dimensions: int | None) -> list[float]:
    """What Ollama answers: normalized, cut to `dimensions`, normalized again; the same as
    normalizing the cut vector once, since scaling does not change its direction."""
    return normalized(vector[:dimensions] if dimensions else vector)


def base64_float32(vector: Sequence[float]) -> str:
    """The vector as OpenAI's `encoding_format: "base64"`: little-endian float32, base64."""
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode("ascii")


# ---- bodies ------------------------------------------------------------------------------


class EmbedRequest(msgspec.Struct, forbid_unknown_fields=True):
    model: str
    input: str | list[str] | None = None
    truncate: bool = True
    dimensions: int | None = None
    keep_alive: KeepAlive = None
    options: dict[str, Any] | None = None


class EmbedResponse(msgspec.Struct):
    model: str
    embeddings: list[list[float]]
    total_duration: int
    load_duration: int
    prompt_eval_count: int


class LegacyEmbeddingRequest(msgspec.Struct, forbid_unknown_fields=True):
    model: str
    prompt: str = ""
    keep_alive: KeepAlive = None
    options: dict[str, Any] | None = None


class LegacyEmbeddingResponse(msgspec.Struct):
    embedding: list[float]


class OpenAIEmbeddingRequest(msgspec.Struct, forbid_unknown_fields=True):
    model: str
    input: str | list[Any]  # texts, token ids, or lists of token ids: checked by _openai_inputs
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = None
    user: str | None = None
    # Herd extensions, sent by clients as extra_body.
    truncate: bool = True
    keep_alive: KeepAlive = None
    options: dict[str, Any] | None = None


class OpenAIEmbedding(msgspec.Struct):
    object: Literal["embedding"]
    embedding: list[float] | str
    index: int


class OpenAIEmbeddingUsage(msgspec.Struct):
    prompt_tokens: int
    total_tokens: int


class OpenAIEmbeddingList(msgspec.Struct):
    object: Literal["list"]
    data: list[OpenAIEmbedding]
    model: str
    usage: OpenAIEmbeddingUsage


# ---- one embed job -----------------------------------------------------------------------


async def _embed(request: Request[Any, Any, Any], catalog: Catalog, queue: JobQueue, name: str,
                 inputs: list[str | list[int]], *, truncate: bool = True, dimensions: int | None = None,
                 options: dict[str, Any] | None, keep_alive: KeepAlive) -> tuple[Embeddings, int]:
    """Embed `inputs` with the model (no inputs: only load it); the raw vectors and the total
    duration in nanoseconds."""
    model = await catalog.resolve(name)
    job = Job(
        id=new_job_id(),
        model=name,
        **model.record.load_target(),
        prompt=None,
        embed=inputs or None,
        truncate=truncate,
        dimensions=dimensions or None,
        options=merge_options(model.record.parameters, options),
        keep_alive=keep_alive_seconds(keep_alive),
        created=time.time(),
    )
    try:
        generation, first = await start(queue, job, request)
    except ApiError as exc:
        if exc.status == 400:  # the worker refused an input: too long, empty, a bad token id
            exc.param = exc.param or "input"
        raise
    if isinstance(first, Done):  # the answer to a load
        first = Embeddings(attempt=first.attempt, seq=first.seq, vectors=[], load_duration=first.load_duration)
    if not isinstance(first, Embeddings):
        await generation.abandon()
        raise ApiError(500, "the worker answered an embed job with text")
    return first, generation.total_duration()


def _json(body: Any) -> Response[bytes]:
    return Response(_encode(body), media_type="application/json")


@post("/api/embed", status_code=200)
async def embed(request: Request[Any, Any, Any], catalog: Catalog, queue: JobQueue) -> Response[bytes]:
    body: EmbedRequest = decode_body(await request.body(), EmbedRequest)
    if body.dimensions is not None and body.dimensions < 0:
        raise bad_request("dimensions must be a positive integer", param="dimensions")
    texts = body.input if isinstance(body.input, list) else [body.input] if body.input else []
    inputs: list[str | list[int]] = list(texts)
    result, total = await _embed(request, catalog, queue, body.model, inputs, truncate=body.truncate,
                                 dimensions=body.dimensions, options=body.options, keep_alive=body.keep_alive)
    return _json(EmbedResponse(
        model=body.model, embeddings=[shaped(v, body.dimensions) for v in result.vectors], total_duration=total,
        load_duration=result.load_duration, prompt_eval_count=result.prompt_eval_count))


@post("/api/embeddings", status_code=200)
async def embeddings(request: Request[Any, Any, Any], catalog: Catalog, queue: JobQueue) -> Response[bytes]:
    """The legacy route: one prompt, its vector not normalized."""
    body: LegacyEmbeddingRequest = decode_body(await request.body(), LegacyEmbeddingRequest)
    inputs: list[str | list[int]] = [body.prompt] if body.prompt else []
    result, _ = await _embed(request, catalog, queue, body.model, inputs, options=body.options,
                             keep_alive=body.keep_alive)
    return _json(LegacyEmbeddingResponse(embedding=result.vectors[0] if result.vectors else []))


def _is_token(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= _MAX_TOKEN_ID


def _openai_inputs(value: str | list[Any]) -> list[str | list[int]]:
    """OpenAI's four shapes of `input`: a text, texts, token ids, or lists of token ids."""
    if isinstance(value, str):
        return [value]
    if value and all(isinstance(v, str) for v in value):
        return list(value)
    if value and all(_is_token(v) for v in value):
        return [list(value)]
    if value and all(isinstance(v, list) and v and all(_is_token(t) for t in v) for v in value):
        return list(value)
    raise bad_request("'input' must be a string, a list of strings, a list of token ids or a list of "
                      "non-empty lists of token ids, and not empty", param="input")


@post("/v1/embeddings", status_code=200)
async def openai_embeddings(request: Request[Any, Any, Any], catalog: Catalog, queue: JobQueue) -> Response[bytes]:
    body: OpenAIEmbeddingRequest = decode_body(await request.body(), OpenAIEmbeddingRequest)
    inputs = _openai_inputs(body.input)
    if body.dimensions is not None and body.dimensions < 1:
        raise bad_request("'dimensions' must be at least 1", param="dimensions")
    result, _ = await _embed(request, catalog, queue, body.model, inputs, truncate=body.truncate,
                             dimensions=body.dimensions, options=body.options, keep_alive=body.keep_alive)
    vectors = [shaped(v, body.dimensions) for v in result.vectors]
    data = [OpenAIEmbedding(object="embedding", embedding=base64_float32(v) if body.encoding_format == "base64" else v,
                            index=i) for i, v in enumerate(vectors)]
    return _json(OpenAIEmbeddingList(
        object="list", model=body.model, data=data,
        usage=OpenAIEmbeddingUsage(prompt_tokens=result.prompt_eval_count, total_tokens=result.prompt_eval_count),
    ))


ROUTES = [embed, embeddings, openai_embeddings]
