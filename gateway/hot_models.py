"""The models this gateway resolved recently, checked per request with a few stat calls.

`ModelStore.get` proves on every call that a name's manifest is still contained in the store
(a realpath: one lstat per path component), stats it and lstats every blob: about twenty
system calls and much pathlib work per request, a third of the gateway's own CPU for a
short generation. A record remembered here is served again while its manifest file is the
same file (device, inode, size, mtime) and every blob is still a plain file of its size:
exactly what the store checks before it reuses a record, minus the containment proof, which
was made for this very file when it was remembered.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable

from herd.store.names import ModelName, digest_hex, parse_name
from herd.store.store import ModelRecord

_LIMIT = 64  # names remembered at most; clients use a handful of models


def _identity(found: os.stat_result) -> tuple[int, int, int, int]:
    return found.st_dev, found.st_ino, found.st_size, found.st_mtime_ns


class _Entry:
    __slots__ = ("blobs", "identity", "manifest", "record")

    def __init__(self, record: ModelRecord, identity: tuple[int, int, int, int], blobs_dir: str) -> None:
        self.record = record
        self.manifest = str(record.manifest_path)
        self.identity = identity
        self.blobs = [(os.path.join(blobs_dir, f"sha256-{digest_hex(layer.digest)}"), layer.size)
                      for layer in [record.manifest.config, *record.manifest.layers]]

    def current(self) -> bool:
        try:
            if _identity(os.stat(self.manifest)) != self.identity:
                return False
            for path, size in self.blobs:
                found = os.lstat(path)
                if not stat.S_ISREG(found.st_mode) or found.st_size != size:
                    return False
        except OSError:
            return False
        return True


class HotModels:
    """Name (as the client spelled it) → its record, while nothing about it changed."""

    def __init__(self, blobs_dir: str | os.PathLike[str]) -> None:
        self._blobs_dir = str(blobs_dir)
        self._entries: dict[str, _Entry] = {}

    def get(self, name: str) -> ModelRecord | None:
        entry = self._entries.get(name)
        if entry is None:
            return None
        if entry.current():
            return entry.record
        del self._entries[name]
        return None

    def remember(self, name: str, record: ModelRecord, lookup: Callable[[], ModelRecord | None]) -> None:
        """Remember `record`, just returned by `lookup()` for `name`, if it is safe to: the name
        is the manifest's exact spelling (a case-insensitive match could be overtaken by an exact
        one), and `lookup()` still returns this very record after its manifest was stat'ed, so the
        identity remembered is the one of the file the record was read from."""
        if _exact_name(name) != record.name:
            return
        try:
            identity = _identity(os.stat(record.manifest_path))
        except OSError:
            return
        if lookup() is not record:
            return
        if len(self._entries) >= _LIMIT:
            self._entries.clear()
        self._entries[name] = _Entry(record, identity, self._blobs_dir)

    def forget(self, name: str) -> None:
        self._entries.pop(name, None)


def _exact_name(name: str) -> ModelName | None:
    try:
        return parse_name(name)
    except ValueError:
        return None
