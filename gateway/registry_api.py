"""`POST /api/pull` and `POST /api/push`: a registry transfer run in the gateway, its progress as NDJSON.

As in Ollama (`streamResponse`/`waitForStream`): an error before the first status is a plain
500 `{"error"}`; after it, one more line `{"error": "..."}` with status 200. `stream: false`
answers once, with the last status or the error (500). A client that goes away cancels the
transfer; a pull's finished bytes stay on disk, so the next pull goes on from there.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import msgspec
from litestar import Request, Response, post
from litestar.response import Stream

from gateway.catalog import checked_name
from gateway.errors import ApiError, decode_body
from herd.registry import Progress, RegistryError, pull_model, push_model
from herd.registry.client import Tuning
from herd.registry.progress import Emit
from herd.store.store import ModelStore, StoreError

log = logging.getLogger(__name__)
_encode = msgspec.json.Encoder().encode


class PullRequest(msgspec.Struct, forbid_unknown_fields=True):
    model: str = ""
    name: str = ""  # the old spelling
    insecure: bool = False
    stream: bool = True
    username: str = ""  # deprecated in Ollama's API, ignored there as here
    password: str = ""


PushRequest = PullRequest  # the same fields in Ollama's API


class Transfers:
    """What the routes need: the store they write and how pulls prune."""

    def __init__(self, store: ModelStore, *, prune: bool, tuning: Tuning | None = None) -> None:
        self.store = store
        self.prune = prune
        self.tuning = tuning


_Item = Progress | BaseException | None  # None: the transfer ended well


def _message(exc: BaseException) -> str:
    if isinstance(exc, RegistryError | StoreError | OSError | ValueError):
        return str(exc)
    log.error("registry transfer failed", exc_info=exc)
    return f"internal error: {exc}"


async def _answer(run: Callable[[Emit], Awaitable[Any]], stream: bool) -> Response[bytes] | Stream:
    items: asyncio.Queue[_Item] = asyncio.Queue()

    async def transfer() -> None:
        try:
            await run(items.put_nowait)
        except Exception as exc:
            items.put_nowait(exc)
        else:
            items.put_nowait(None)

    task = asyncio.create_task(transfer())

    async def stop() -> None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    first = await items.get()
    if isinstance(first, BaseException):
        await stop()
        raise ApiError(500, _message(first))
    if not stream:
        last = first
        try:
            while (item := await items.get()) is not None:
                if isinstance(item, BaseException):
                    raise ApiError(500, _message(item))
                last = item
        finally:
            await stop()
        return Response(_encode(last), media_type="application/json")

    async def lines() -> AsyncIterator[bytes]:
        item: _Item = first
        try:
            while item is not None:
                if isinstance(item, BaseException):
                    yield _encode({"error": _message(item)}) + b"\n"
                    return
                yield _encode(item) + b"\n"
                item = await items.get()
        finally:
            await stop()  # the client left, or the transfer ended

    return Stream(lines(), media_type="application/x-ndjson")


@post("/api/pull", status_code=200)
async def pull(request: Request[Any, Any, Any], transfers: Transfers) -> Response[bytes] | Stream:
    body: PullRequest = decode_body(await request.body(), PullRequest)
    name = checked_name(body.model or body.name)
    return await _answer(lambda emit: pull_model(transfers.store, name, emit=emit, insecure=body.insecure,
                                                 prune=transfers.prune, tuning=transfers.tuning), body.stream)


@post("/api/push", status_code=200)
async def push(request: Request[Any, Any, Any], transfers: Transfers) -> Response[bytes] | Stream:
    body: PushRequest = decode_body(await request.body(), PushRequest)
    name = checked_name(body.model or body.name)
    return await _answer(lambda emit: push_model(transfers.store, name, emit=emit, insecure=body.insecure,
                                                 tuning=transfers.tuning), body.stream)


ROUTES = [pull, push]
