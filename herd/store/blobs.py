"""Content-addressed blobs and the file-system care the store needs.

    <blobs>/sha256-<hex>    one file a digest

A digest is validated before it becomes a path, and every path is resolved and checked to
stay inside its base directory (a symlink pointing elsewhere is refused). Writes go to a
temporary file that is fsynced and renamed, so a crash never leaves half a file under its
final name. The store's errors live here, the lowest layer that raises them.
"""

from __future__ import annotations

import hashlib
import io
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from herd.store.names import digest_hex, parse_digest

_CHUNK = 1 << 20


class StoreError(Exception):
    """A store operation that cannot be done (bad FROM, unsafe path, missing blob...)."""


class CorruptModel(StoreError):
    """A manifest, config or layer that is unreadable, malformed or does not match its blob."""


class UnsafePath(StoreError):
    """A path that would resolve outside the store."""


class DigestMismatch(StoreError):
    pass


def contained(path: Path, base: Path) -> Path:
    """`path`, unless it resolves outside `base` (UnsafePath)."""
    # Resolve against the resolved base, so a store whose blobs/ is itself a symlink to
    # another disk still works while a blob symlinked out of it does not.
    if not path.resolve().is_relative_to(base.resolve()):
        raise UnsafePath(f"{path} resolves outside {base}")
    return path


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_temp(directory: Path, chunks: Iterator[bytes]) -> Path:
    """Write chunks to a new hidden file in `directory`, fsynced; the caller renames it."""
    directory.mkdir(parents=True, exist_ok=True)
    tmp = directory / f".herd-{uuid.uuid4().hex}-partial"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        with os.fdopen(fd, "wb") as f:
            for chunk in chunks:
                f.write(chunk)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp


def atomic_write(path: Path, data: bytes) -> None:
    tmp = _write_temp(path.parent, iter([data]))
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def read_capped(path: Path, limit: int, what: str) -> bytes:
    with open(path, "rb") as f:
        data = f.read(limit + 1)
    if len(data) > limit:
        raise CorruptModel(f"{what} is larger than {limit} bytes")
    return data


class BlobStore:
    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def path(self, digest: str) -> Path:
        """Where a blob lives; raises InvalidDigest for anything but sha256:<64 hex>."""
        return contained(self.directory / f"sha256-{digest_hex(digest)}", self.directory)

    def has(self, digest: str) -> bool:
        return self.path(digest).is_file()

    def add(self, source: str | os.PathLike[str] | bytes | BinaryIO, *, digest: str | None = None) -> str:
        """Store a file, bytes or a binary stream; returns `sha256:<hex>`.

        With `digest`, content that hashes differently raises DigestMismatch and is discarded.
        A file whose blob already exists is hashed but not copied again.
        """
        expected = parse_digest(digest) if digest is not None else None
        if isinstance(source, bytes):
            return self._add_stream(io.BytesIO(source), expected)
        if isinstance(source, str | os.PathLike):
            path = Path(source)
            with open(path, "rb") as f:
                actual = "sha256:" + hashlib.file_digest(f, "sha256").hexdigest()
                size = os.fstat(f.fileno()).st_size
            if expected is not None and actual != expected:
                raise DigestMismatch(f"{path} has digest {actual}, expected {expected}")
            existing = self.path(actual)
            if existing.is_file() and existing.stat().st_size == size:
                return actual
            with open(path, "rb") as f:  # hashed again while copying: the file may have changed
                return self._add_stream(f, actual)
        return self._add_stream(source, expected)

    def _add_stream(self, stream: BinaryIO, expected: str | None) -> str:
        hasher = hashlib.sha256()

        def chunks() -> Iterator[bytes]:
            while chunk := stream.read(_CHUNK):
                hasher.update(chunk)
                yield chunk

        tmp = _write_temp(self.directory, chunks())
        try:
            actual = "sha256:" + hasher.hexdigest()
            if expected is not None and actual != expected:
                raise DigestMismatch(f"content has digest {actual}, expected {expected}")
            final = self.path(actual)
            if final.is_file() and final.stat().st_size == tmp.stat().st_size:
                return actual  # keep the existing inode: a loaded model may have it mapped
            os.replace(tmp, final)
            _fsync_dir(self.directory)
            return actual
        finally:
            tmp.unlink(missing_ok=True)

    def adopt(self, path: Path) -> str:
        """Move a finished file from this directory into the store under its digest (no copy:
        a quantized model is as large as the model). Returns `sha256:<hex>`."""
        with open(path, "rb") as f:
            actual = "sha256:" + hashlib.file_digest(f, "sha256").hexdigest()
            os.fsync(f.fileno())
        final = self.path(actual)
        if final.is_file() and final.stat().st_size == path.stat().st_size:
            path.unlink()  # keep the existing inode: a loaded model may have it mapped
            return actual
        os.replace(path, final)
        _fsync_dir(self.directory)
        return actual

    def temp_path(self, label: str) -> Path:
        """A fresh hidden name in the blob directory, for a file that will be adopted."""
        self.directory.mkdir(parents=True, exist_ok=True)
        return self.directory / f".herd-{label}-{uuid.uuid4().hex}-partial"

    def verify(self, digest: str) -> bool:
        """Rehash a blob and compare it with its name."""
        try:
            with open(self.path(digest), "rb") as f:
                return hashlib.file_digest(f, "sha256").hexdigest() == digest_hex(digest)
        except FileNotFoundError:
            return False
