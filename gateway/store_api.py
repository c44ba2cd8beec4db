"""Store operations over HTTP, as Ollama's clients call them: blobs, create, copy."""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
from pathlib import Path
from typing import Any

import msgspec
from litestar import Request, Response, head, post
from litestar.response import Stream

from gateway.catalog import Catalog, checked_name
from gateway.create_run import CreateRun
from gateway.errors import ApiError, bad_request, decode_body
from gateway.wire_ollama import Message
from herd.store.blobs import DigestMismatch
from herd.store.modelfile import Modelfile, ModelfileError, parse_modelfile
from herd.store.names import InvalidDigest, parse_digest
from herd.store.options import OptionError, coerce_option, known_option
from herd.store.quantize import QuantizeError, parse_quantization
from herd.store.store import ModelNotFound

_encode = msgspec.json.Encoder().encode


class CreateRequest(msgspec.Struct, forbid_unknown_fields=True):
    model: str = ""
    name: str = ""  # the old spelling
    from_: str | None = msgspec.field(default=None, name="from")
    files: dict[str, str] | None = None  # file name → "sha256:..." of an uploaded blob
    adapters: dict[str, str] | None = None
    template: str | None = None
    system: str | None = None
    license: str | list[str] | None = None
    parameters: dict[str, Any] | None = None
    messages: list[Message] | None = None
    quantize: str | None = None
    quantization: str | None = None  # the old spelling
    stream: bool = True
    modelfile: str | None = None  # older clients send the Modelfile text itself


class CopyRequest(msgspec.Struct, forbid_unknown_fields=True):
    source: str
    destination: str


def _digest(text: str) -> str:
    try:
        return parse_digest(text)
    except InvalidDigest as exc:
        raise bad_request(str(exc), param="digest") from exc


@head("/api/blobs/{digest:str}")
async def blob_exists(digest: str, catalog: Catalog) -> Response[None]:
    found = await asyncio.to_thread(catalog.store.has_blob, _digest(digest))
    return Response(None, status_code=200 if found else 404)


@post("/api/blobs/{digest:str}", request_max_body_size=None, status_code=201)
async def upload_blob(digest: str, request: Request[Any, Any, Any], catalog: Catalog) -> Response[bytes]:
    """The raw body becomes a blob only if it hashes to `digest`; nothing else is kept."""
    expected = _digest(digest)
    store = catalog.store
    if await asyncio.to_thread(store.has_blob, expected):
        async for _ in request.stream():  # drain, so the client sees the answer
            pass
        return Response(b"", status_code=200)
    store.blobs_dir.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(prefix=".upload-", dir=store.blobs_dir)
    try:
        with os.fdopen(fd, "wb") as out:
            async for chunk in request.stream():
                out.write(chunk)
        await asyncio.to_thread(store.add_blob, temp, digest=expected)
    except DigestMismatch as exc:
        raise bad_request(f"digest mismatch, expected \"{expected}\": {exc}") from exc
    finally:
        with contextlib.suppress(FileNotFoundError):
            Path(temp).unlink()
    return Response(b"", status_code=201)


def _modelfile(body: CreateRequest) -> Modelfile:
    """Ollama's JSON create form as a Modelfile; FROM is a blob digest or a model name,
    never a path on the server."""
    if body.modelfile:
        try:
            return parse_modelfile(body.modelfile)
        except ModelfileError as exc:
            raise bad_request(str(exc), param="modelfile") from exc
    files = body.files or {}
    ggufs = [_digest(d) for name, d in files.items() if name.endswith(".gguf") or len(files) == 1]
    if len(ggufs) > 1:
        raise bad_request("only one GGUF file per model is supported", param="files")
    source = ggufs[0] if ggufs else body.from_
    if not source:
        raise bad_request("neither 'from' nor 'files' was specified", param="from")
    parameters: dict[str, Any] = {}
    for name, value in (body.parameters or {}).items():
        if not known_option(name):
            raise bad_request(f"unknown parameter '{name}'", param=f"parameters.{name}")
        try:
            parameters[name] = coerce_option(name, value)
        except OptionError as exc:
            raise bad_request(str(exc), param=f"parameters.{name}") from exc
    licenses = [body.license] if isinstance(body.license, str) else list(body.license or [])
    return Modelfile(
        from_=source, parameters=parameters, template=body.template, system=body.system, licenses=licenses,
        messages=[(m.role, m.content) for m in body.messages or []],
        adapters=[_digest(d) for d in (body.adapters or {}).values()],  # LoRA GGUFs uploaded as blobs
    )


def _quantization(body: CreateRequest) -> str | None:
    requested = body.quantize or body.quantization
    if not requested:
        return None
    try:
        return parse_quantization(requested)
    except QuantizeError as exc:
        raise bad_request(str(exc), param="quantize") from exc


@post("/api/create", status_code=200)
async def create(request: Request[Any, Any, Any], catalog: Catalog) -> Response[bytes] | Stream:
    body: CreateRequest = decode_body(await request.body(), CreateRequest)
    name = checked_name(body.model or body.name)
    modelfile = _modelfile(body)
    run = CreateRun(catalog.store, name, modelfile, quantize=_quantization(body))
    if not body.stream:
        await run.finished()
        return Response(_encode({"status": "success"}), media_type="application/json")
    await run.started()  # an early failure is a plain HTTP error, not a stream
    return Stream(run.lines(), media_type="application/x-ndjson")


@post("/api/copy", status_code=200)
async def copy(request: Request[Any, Any, Any], catalog: Catalog) -> Response[bytes]:
    body: CopyRequest = decode_body(await request.body(), CopyRequest)
    checked_name(body.source, "source")
    checked_name(body.destination, "destination")
    try:
        await asyncio.to_thread(catalog.store.copy, body.source, body.destination)
    except ModelNotFound as exc:
        raise ApiError(404, str(exc), param="source") from exc
    return Response(b"", status_code=200)


ROUTES = [blob_exists, upload_blob, create, copy]
