"""One blob fetched in parallel ranged parts, resumable, and verified before it is kept.

    blobs/sha256-<hex>-partial      the bytes as they arrive (a sparse file of the full size)
    blobs/sha256-<hex>-partial-<N>  part N as JSON {"N", "Offset", "Size", "Completed"}

These are Ollama's own file names and fields, so a pull interrupted by either program can be
finished by the other. A part's `Completed` is written only after its bytes are fsynced: it
never claims bytes the file lacks, and a new run asks only for the rest of each part. The
whole file is hashed before it is renamed to its digest; a file that hashes otherwise is
deleted with its parts, never kept.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
from pathlib import Path

import httpx
import msgspec

from herd.registry.client import RegistryClient, Tuning
from herd.registry.errors import BlobCorrupt, RegistryError
from herd.registry.progress import BlobProgress
from herd.registry.tasks import run_all
from herd.store.blobs import atomic_write

log = logging.getLogger(__name__)

_WRITE = 1 << 20  # bytes buffered before a write


class PartState(msgspec.Struct, rename="pascal"):
    """Ollama's jsonBlobDownloadPart."""

    n: int
    offset: int
    size: int
    completed: int = 0


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class BlobDownload:
    """Call prepare(), run(), then commit(); close() in any case."""

    def __init__(self, path: Path, digest: str, size: int, tuning: Tuning, progress: BlobProgress) -> None:
        self.path = path
        self.digest = digest
        self.size = size
        self.tuning = tuning
        self.progress = progress
        self.partial = path.with_name(path.name + "-partial")
        self.parts: list[PartState] = []
        self._saved: dict[int, int] = {}  # part → bytes already durable
        self._fd = -1

    # -- files -------------------------------------------------------------------------------

    def _part_path(self, n: int) -> Path:
        return self.partial.with_name(f"{self.partial.name}-{n}")

    def _part_files(self) -> list[Path]:
        prefix = self.partial.name + "-"
        return [p for p in self.partial.parent.glob(prefix + "*") if p.name[len(prefix):].isdigit()]

    def _resumable_parts(self) -> list[PartState] | None:
        """The parts a previous run left, if they describe this blob and its file is there."""
        files = self._part_files()
        if not files:
            return None
        try:
            parts = sorted((msgspec.json.decode(f.read_bytes(), type=PartState) for f in files), key=lambda p: p.n)
            on_disk = self.partial.stat().st_size
        except (OSError, msgspec.DecodeError):
            return None
        offset = 0
        for i, part in enumerate(parts):
            if part.n != i or part.offset != offset or part.size <= 0 or not 0 <= part.completed <= part.size:
                return None
            offset += part.size
        return parts if offset == self.size and on_disk == self.size else None

    def _new_parts(self) -> list[PartState]:
        step = self.tuning.part_size(self.size)
        return [PartState(n=i, offset=offset, size=min(step, self.size - offset))
                for i, offset in enumerate(range(0, self.size, step))]

    def _write_part(self, part: PartState, completed: int) -> None:
        state = msgspec.structs.replace(part, completed=completed)
        atomic_write(self._part_path(part.n), msgspec.json.encode(state) + b"\n")

    def prepare(self) -> None:
        """Take up the parts of an interrupted pull, or cut the blob into new ones."""
        self.partial.parent.mkdir(parents=True, exist_ok=True)
        parts = self._resumable_parts()
        if parts is None:
            self.discard()
            parts = self._new_parts()
            self._fd = os.open(self.partial, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
            os.ftruncate(self._fd, self.size)  # sparse: parts write at their own offsets
            for part in parts:
                self._write_part(part, 0)
        else:
            self._fd = os.open(self.partial, os.O_RDWR)
            log.info("resuming %s: %d of %d bytes already here", self.digest[7:19],
                     sum(p.completed for p in parts), self.size)
        self.parts = parts
        self._saved = {p.n: p.completed for p in parts}
        self.progress.completed = sum(p.completed for p in parts)

    def _save(self, part: PartState, completed: int) -> None:
        """Make `completed` bytes of a part durable, then record them."""
        if completed == self._saved.get(part.n):
            return
        os.fdatasync(self._fd)
        self._write_part(part, completed)
        self._saved[part.n] = completed

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def discard(self) -> None:
        self.close()
        self.partial.unlink(missing_ok=True)
        for path in self._part_files():
            path.unlink(missing_ok=True)

    # -- transfer ----------------------------------------------------------------------------

    async def run(self, client: RegistryClient, gate: asyncio.Semaphore) -> None:
        """Fetch every unfinished part; `gate` bounds the connections of the whole pull."""
        url = client.url(f"blobs/{self.digest}")
        await run_all(self._download_part(client, url, part, gate) for part in self.parts
                      if part.completed < part.size)

    async def _download_part(self, client: RegistryClient, url: str, part: PartState, gate: asyncio.Semaphore) -> None:
        failures = 0
        while part.completed < part.size:
            before = part.completed
            error: Exception | None = None
            try:
                async with gate:
                    await self._fetch(client, url, part)
            except RegistryError as exc:
                if not exc.retryable:
                    raise
                error = exc
            except httpx.TransportError as exc:  # the body broke off
                error = exc
            finally:
                self._save(part, part.completed)  # also when cancelled: a re-run resumes here
            if part.completed >= part.size:
                return
            failures = 0 if part.completed > before else failures + 1
            reason = error or "the registry sent fewer bytes than asked"
            if failures > self.tuning.retries:
                raise RegistryError(f"{self.digest[7:19]} part {part.n}: max retries exceeded: {reason}")
            delay = min(self.tuning.backoff * 2 ** (failures - 1), 8.0) if failures else 0.0
            log.info("%s part %d stopped at %d of %d bytes (%s); retrying in %.2fs", self.digest[7:19], part.n,
                     part.completed, part.size, reason, delay)
            await asyncio.sleep(delay)

    async def _fetch(self, client: RegistryClient, url: str, part: PartState) -> None:
        start = part.offset + part.completed
        end = part.offset + part.size - 1
        async with client.stream("GET", url, headers={"Range": f"bytes={start}-{end}"}) as response:
            if response.status_code not in (200, 206):
                raise RegistryError(f"unexpected status code {response.status_code}", status=response.status_code)
            skip = start if response.status_code == 200 else 0  # a server that ignores Range sends it all
            buffer = bytearray()
            try:
                async for chunk in response.aiter_bytes():
                    if skip:
                        dropped = min(skip, len(chunk))
                        chunk, skip = chunk[dropped:], skip - dropped
                    room = part.size - part.completed - len(buffer)
                    buffer += chunk[:room]
                    if len(buffer) >= _WRITE:
                        # Hand the bytes over before awaiting: if the task is cancelled while their
                        # progress is saved, the `finally` below must not write them a second time.
                        full, buffer = buffer, bytearray()
                        await self._write(part, full)
                    if len(chunk) >= room:
                        break  # the part is whole (anything more is not ours)
            finally:
                if buffer:  # keep what arrived, even when the connection broke or we were cancelled
                    self._write_now(part, buffer)

    def _write_now(self, part: PartState, data: bytes | bytearray) -> None:
        view = memoryview(data)
        position = part.offset + part.completed
        while view:
            written = os.pwrite(self._fd, view, position)
            view, position = view[written:], position + written
        part.completed += len(data)
        self.progress.completed += len(data)

    async def _write(self, part: PartState, data: bytearray) -> None:
        self._write_now(part, data)
        if part.completed - self._saved.get(part.n, 0) >= self.tuning.checkpoint:
            await asyncio.to_thread(self._save, part, part.completed)

    # -- the end -----------------------------------------------------------------------------

    def commit(self) -> None:
        """Hash the whole file; keep it under its digest only if it matches (else delete it)."""
        self.close()
        with open(self.partial, "rb") as f:
            actual = "sha256:" + hashlib.file_digest(f, "sha256").hexdigest()
        if actual != self.digest:
            self.discard()
            raise BlobCorrupt(f"digest mismatch, file must be downloaded again: want {self.digest}, got {actual}")
        os.replace(self.partial, self.path)
        _fsync_dir(self.path.parent)
        for path in self._part_files():
            path.unlink(missing_ok=True)
