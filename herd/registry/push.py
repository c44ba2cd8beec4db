"""`push`: the blobs the registry lacks, then the manifest, as Ollama's PushModel does.

The manifest goes up byte for byte as the store holds it, so a model pulled back has the
same digest (`/api/tags`) as the one pushed.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses

from herd.registry.client import RegistryClient, Tuning
from herd.registry.errors import RegistryError
from herd.registry.progress import BlobProgress, Emit, Progress, Reporter
from herd.registry.pull import blobs_of
from herd.registry.tasks import run_all
from herd.registry.upload import upload_blob
from herd.store.blobs import StoreError, read_capped
from herd.store.names import ModelName, parse_name
from herd.store.store import ModelStore

_MAX_MANIFEST = 1 << 20


async def push_model(store: ModelStore, name: str | ModelName, *, emit: Emit, insecure: bool = False,
                     tuning: Tuning | None = None) -> None:
    target = name if isinstance(name, ModelName) else parse_name(name)
    emit(Progress("retrieving manifest"))
    try:
        record = await asyncio.to_thread(store.get, target)
    except StoreError as exc:
        emit(Progress("couldn't retrieve manifest"))
        raise RegistryError(str(exc)) from exc
    if record is None:
        emit(Progress("couldn't retrieve manifest"))
        raise RegistryError(f'model "{name}" not found')
    raw = await asyncio.to_thread(read_capped, record.manifest_path, _MAX_MANIFEST, "manifest")
    # The stored spelling of the name (matched case-insensitively), with the scheme asked for.
    remote = dataclasses.replace(record.name, scheme=target.scheme)
    async with RegistryClient(remote, insecure=insecure, tuning=tuning) as client:
        blobs = [BlobProgress("pushing", layer.digest, layer.size) for layer in blobs_of(raw)]
        gate = asyncio.Semaphore(client.tuning.blobs_at_once)

        async def one(blob: BlobProgress) -> None:
            async with gate:
                await upload_blob(client, store.blob_path(blob.digest), blob)

        reporter = Reporter(emit, blobs)
        reporting = asyncio.create_task(reporter.run())
        try:
            await run_all(one(blob) for blob in blobs)
        finally:
            reporting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reporting
        reporter.flush()
        emit(Progress("pushing manifest"))
        await client.put_manifest(remote.tag, raw)
    emit(Progress("success"))
