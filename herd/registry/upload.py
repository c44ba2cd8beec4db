"""One blob to a registry unless it has it: HEAD, `POST uploads/`, then the bytes and `PUT ?digest=`.

A blob up to one part's size goes in a single `PUT` (monolithic); a larger one in `PATCH`
chunks with `Content-Range`, each to the Location the previous answer gave, then an empty
`PUT ?digest=` that the registry checks against what it received. A failed attempt starts a
new upload session: a half-sent PATCH leaves the old session in a state nobody can know.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import httpx

from herd.registry.client import RegistryClient
from herd.registry.errors import RegistryError
from herd.registry.progress import BlobProgress

log = logging.getLogger(__name__)

_READ = 1 << 20
_OCTETS = "application/octet-stream"


async def _read(path: Path, offset: int, length: int, progress: BlobProgress) -> AsyncIterator[bytes]:
    progress.completed = offset  # a body sent again (after a token round) counts from its start
    with path.open("rb") as f:
        f.seek(offset)
        left = length
        while left:
            chunk = await asyncio.to_thread(f.read, min(_READ, left))
            if not chunk:
                raise RegistryError(f"{path} is shorter than its manifest says")
            left -= len(chunk)
            progress.completed += len(chunk)
            yield chunk


def _with_digest(url: str, digest: str) -> str:
    # Merge, not replace: the Location carries the registry's own upload state (`_state=`).
    return str(httpx.URL(url).copy_merge_params({"digest": digest}))


async def _upload_once(client: RegistryClient, path: Path, progress: BlobProgress) -> None:
    size, digest = progress.total, progress.digest
    location = (await client.request("POST", client.url("blobs/uploads/"))).location()
    chunk = client.tuning.part_size(size)
    if size <= chunk:
        await client.request("PUT", _with_digest(location, digest),
                             headers={"Content-Type": _OCTETS, "Content-Length": str(size)},
                             content=lambda: _read(path, 0, size, progress))
        return
    for offset in range(0, size, chunk):
        length = min(chunk, size - offset)
        answer = await client.request(
            "PATCH", location,
            headers={"Content-Type": _OCTETS, "Content-Length": str(length),
                     "Content-Range": f"{offset}-{offset + length - 1}"},
            content=lambda offset=offset, length=length: _read(path, offset, length, progress),  # type: ignore[misc]
        )
        location = answer.location()
    await client.request("PUT", _with_digest(location, digest), headers={"Content-Length": "0"})


async def upload_blob(client: RegistryClient, path: Path, progress: BlobProgress) -> None:
    if await client.has_blob(progress.digest):
        progress.completed = progress.total
        return
    failures = 0
    while True:
        try:
            await _upload_once(client, path, progress)
            return
        except RegistryError as exc:
            if not exc.retryable or failures >= client.tuning.retries:
                raise
            failures += 1
            delay = min(client.tuning.backoff * 2 ** (failures - 1), 8.0)
            log.info("uploading %s failed (%s); starting again in %.2fs", progress.digest[7:19], exc, delay)
            progress.completed = 0
            await asyncio.sleep(delay)
