"""One `/api/create` at work: the store's create in a thread, its progress as NDJSON.

Creating reads and hashes GGUF files and may quantize one (seconds to minutes of CPU), so it
runs off the event loop. Progress is held back until the slow part begins (quantization) or
the create ends: a request that fails early gets a plain HTTP error (400, 404...), one that
fails later ends its stream with Ollama's `{"error": ...}` line.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import msgspec

from gateway.errors import ApiError
from herd.store.modelfile import Modelfile, ModelfileError
from herd.store.progress import Progress
from herd.store.quantize import QuantizeError, QuantizerUnavailable
from herd.store.store import ModelNotFound, ModelStore, StoreError

_encode = msgspec.json.Encoder().encode
_Item = Progress | BaseException | None  # None: created


def api_error(exc: BaseException) -> ApiError:
    """The HTTP error for a create that failed, in Ollama's error shape."""
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, ModelNotFound):
        return ApiError(404, str(exc), param="from")
    if isinstance(exc, QuantizerUnavailable):
        return ApiError(501, str(exc), param="quantize")
    if isinstance(exc, QuantizeError):
        return ApiError(400, str(exc), param="quantize")
    if isinstance(exc, StoreError | ModelfileError | ValueError):
        return ApiError(400, str(exc))
    return ApiError(500, f"create failed: {exc}")


def _slow(item: _Item) -> bool:
    return isinstance(item, Progress) and item.status.startswith("quantizing")


class CreateRun:
    def __init__(self, store: ModelStore, name: str, modelfile: Modelfile, *, quantize: str | None,
                 base_dir: Path | None = None) -> None:
        self._loop = asyncio.get_running_loop()
        self._items: asyncio.Queue[_Item] = asyncio.Queue()
        self._store, self._name, self._modelfile = store, name, modelfile
        self._quantize, self._base_dir = quantize, base_dir
        self._task = asyncio.ensure_future(asyncio.to_thread(self._run))
        self._held: list[Progress] = []

    def _post(self, item: _Item) -> None:
        self._loop.call_soon_threadsafe(self._items.put_nowait, item)

    def _run(self) -> None:
        try:
            self._store.create(self._name, self._modelfile, base_dir=self._base_dir, quantize=self._quantize,
                               progress=self._post)
        except BaseException as exc:  # reported to the client, whatever it is
            self._post(exc)
        else:
            self._post(None)

    async def started(self) -> None:
        """Wait until the create ends or its slow part begins; raise ApiError if it failed by then."""
        while True:
            item = await self._items.get()
            if isinstance(item, BaseException):
                raise api_error(item)
            if item is None:
                self._items.put_nowait(None)
                return
            self._held.append(item)
            if _slow(item):
                return

    async def finished(self) -> None:
        """Wait for the end; raise ApiError if the create failed."""
        while (item := await self._items.get()) is not None:
            if isinstance(item, BaseException):
                raise api_error(item)

    async def lines(self) -> AsyncIterator[bytes]:
        """NDJSON progress lines, ending with `success` or an error line."""
        for progress in self._held:
            yield _encode(progress) + b"\n"
        while True:
            item = await self._items.get()
            if item is None:
                yield _encode(Progress("success")) + b"\n"
                return
            if isinstance(item, BaseException):
                yield _encode({"error": api_error(item).message}) + b"\n"
                return
            yield _encode(item) + b"\n"
