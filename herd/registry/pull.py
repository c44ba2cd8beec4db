"""`pull`: manifest, then the missing blobs in parallel parts, verified, then the manifest last.

Ollama's order and statuses (`server/images.go` PullModel). Blobs already in the store are
skipped; the manifest is written only once every blob is verified and in place, so a
failed pull never leaves a model that points at missing or corrupt blobs. When the pull
replaces a tag's manifest, blobs that only the old one used are removed unless pruning is
off (`HERD_NOPRUNE`/`OLLAMA_NOPRUNE`).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import weakref
from collections.abc import AsyncIterator, Iterable
from pathlib import Path

import msgspec

from herd.registry.client import RegistryClient, Tuning
from herd.registry.download import BlobDownload
from herd.registry.errors import BlobCorrupt, RegistryError
from herd.registry.progress import BlobProgress, Emit, Progress, Reporter
from herd.registry.tasks import run_all
from herd.store.manifest import Layer, Manifest
from herd.store.names import InvalidDigest, ModelName, parse_digest, parse_name
from herd.store.store import ModelStore

# One download of a digest at a time: a second pull of a shared layer waits, then finds it in
# the store. In this process an asyncio lock; across processes (gateways on several hosts may
# share a store over NFS, a CLI may pull beside a server) a POSIX lock on a file beside the blob.
_blob_locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()
_LOCK_POLL_S = 0.1


@contextlib.asynccontextmanager
async def _locked_file(path: Path) -> AsyncIterator[None]:
    """An exclusive `lockf` lock on `path`, polled so the event loop never blocks on it; closing
    the file releases it (and so does the process's death)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        while True:
            try:
                fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError:  # EAGAIN/EACCES: another process holds it
                await asyncio.sleep(_LOCK_POLL_S)
        yield
    finally:
        os.close(fd)


@contextlib.asynccontextmanager
async def _holding(store: ModelStore, digests: Iterable[str]) -> AsyncIterator[None]:
    lock_files: list[Path] = []
    async with contextlib.AsyncExitStack() as stack:
        for digest in sorted(set(digests)):  # one order for everyone: no deadlock
            lock = _blob_locks.get(digest)
            if lock is None:
                lock = _blob_locks[digest] = asyncio.Lock()
            await stack.enter_async_context(lock)
            lock_file = store.blobs_dir / f".herd-pull-{digest.replace(':', '-')}"  # hidden: the store lists none
            await stack.enter_async_context(_locked_file(lock_file))
            lock_files.append(lock_file)
        yield
        # The blobs are in place: whoever waits on (or later makes) a lock file finds them there,
        # so the files can go. After a failure they stay, and the next pull takes turns again.
        for path in lock_files:
            path.unlink(missing_ok=True)


def blobs_of(raw: bytes) -> list[Layer]:
    """The layers then the config of a manifest from a registry, validated, each digest once."""
    try:
        manifest = msgspec.json.decode(raw, type=Manifest)
    except msgspec.DecodeError as exc:
        raise RegistryError(f"pull model manifest: not a model manifest: {exc}") from exc
    blobs: dict[str, Layer] = {}
    for layer in [*manifest.layers, manifest.config]:
        try:
            digest = parse_digest(layer.digest)
        except InvalidDigest as exc:
            raise RegistryError(f"pull model manifest: {exc}") from exc
        seen = blobs.setdefault(digest, msgspec.structs.replace(layer, digest=digest))
        if seen.size != layer.size:
            raise RegistryError(f"pull model manifest: {digest} is listed with two sizes")
    return list(blobs.values())


def _present(store: ModelStore, layer: Layer) -> bool:
    path = store.blob_path(layer.digest)
    return path.is_file() and path.stat().st_size == layer.size


async def pull_model(store: ModelStore, name: str | ModelName, *, emit: Emit, insecure: bool = False,
                     prune: bool = True, tuning: Tuning | None = None) -> ModelName:
    """Pull `name` into `store`; statuses go to `emit`. Returns the name written."""
    target = name if isinstance(name, ModelName) else parse_name(name)
    async with RegistryClient(target, insecure=insecure, tuning=tuning) as client:
        emit(Progress("pulling manifest"))
        try:
            raw = await client.get_manifest(target.tag)
        except RegistryError as exc:
            raise RegistryError(f"pull model manifest: {exc}", status=exc.status) from exc
        layers = blobs_of(raw)
        async with _holding(store, (layer.digest for layer in layers)):
            await _fetch_blobs(store, client, layers, emit)
            emit(Progress("writing manifest"))
            written, removed = await asyncio.to_thread(store.write_manifest, target, raw, prune=prune)
    if removed:
        emit(Progress("removing unused layers"))
    emit(Progress("success"))
    return written


async def _fetch_blobs(store: ModelStore, client: RegistryClient, layers: list[Layer], emit: Emit) -> None:
    shown: list[BlobProgress] = []
    downloads: list[BlobDownload] = []
    for layer in layers:
        progress = BlobProgress("pulling", layer.digest, layer.size)
        shown.append(progress)
        if await asyncio.to_thread(_present, store, layer):
            progress.completed = layer.size
        else:
            downloads.append(BlobDownload(store.blob_path(layer.digest), layer.digest, layer.size, client.tuning,
                                          progress))
    reporter = Reporter(emit, shown)
    try:
        for download in downloads:
            await asyncio.to_thread(download.prepare)
        reporting = asyncio.create_task(reporter.run())
        gate = asyncio.Semaphore(client.tuning.connections)
        try:
            await run_all(download.run(client, gate) for download in downloads)
        finally:
            reporting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reporting
        reporter.flush()
        emit(Progress("verifying sha256 digest"))
        corrupt: list[BlobCorrupt] = []
        for download in downloads:  # every blob, so the good ones are kept for the next pull
            try:
                await asyncio.to_thread(download.commit)
            except BlobCorrupt as exc:
                corrupt.append(exc)
        if corrupt:
            raise corrupt[0]
    finally:
        for download in downloads:
            download.close()
