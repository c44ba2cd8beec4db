"""Progress of a pull or push as Ollama streams it, and the per-blob counters behind it.

Statuses are Ollama's: `pulling manifest`, `pulling <12 hex>` (with digest, total,
completed), `verifying sha256 digest`, `writing manifest`, `removing unused layers`,
`success`; and for a push `retrieving manifest`, `pushing <12 hex>`, `pushing manifest`.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable

import msgspec


class Progress(msgspec.Struct, omit_defaults=True):
    """Ollama's ProgressResponse: zero fields are left out, as Go's `omitempty` does."""

    status: str
    digest: str = ""
    total: int = 0
    completed: int = 0


Emit = Callable[[Progress], None]


@dataclasses.dataclass
class BlobProgress:
    """Bytes moved for one blob; transfers update `completed`, a Reporter publishes it."""

    verb: str  # "pulling" or "pushing"
    digest: str  # sha256:<hex>
    total: int
    completed: int = 0

    def progress(self) -> Progress:
        return Progress(f"{self.verb} {self.digest[7:19]}", digest=self.digest, total=self.total,
                        completed=min(self.completed, self.total))


class Reporter:
    """Emits each blob's progress when it changed, at most every `interval` seconds, in order."""

    def __init__(self, emit: Emit, blobs: list[BlobProgress], interval: float = 0.1) -> None:
        self._emit = emit
        self._blobs = blobs
        self._interval = interval
        self._shown: dict[str, int] = {}

    def flush(self) -> None:
        for blob in self._blobs:
            if self._shown.get(blob.digest) != blob.completed:
                self._shown[blob.digest] = blob.completed
                self._emit(blob.progress())

    async def run(self) -> None:
        """Until cancelled; the caller flushes once more at the end."""
        while True:
            self.flush()
            await asyncio.sleep(self._interval)
