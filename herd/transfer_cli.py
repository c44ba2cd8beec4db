"""`herd pull` and `herd push`: stream the server's progress and draw it as `ollama` does.

On a terminal each blob gets a bar (`pulling 4157c46799c1:  45% ▕████      ▏  44 MB/ 98 MB`),
redrawn in place; otherwise (a pipe, a log) plain lines: each status once, each blob once it
is done. Progress goes to stderr, as ollama's does, so `herd run` output stays clean.
"""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

import httpx

from herd.cli import CliError, _client, _stream
from herd.config import Config

_BAR_WIDTH = 25
_REDRAW_EVERY = 0.1  # seconds


def human_bytes(size: float) -> str:
    """Ollama's format.HumanBytes: `98 MB`, `4.7 GB`, `512 B`."""
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if size < 1000 or unit == "TB":
            break
        size /= 1000
    if size >= 10 or size == int(size):
        return f"{int(size)} {unit}"
    return f"{size:.1f} {unit}"


def _bar(label: str, total: int, completed: int) -> str:
    fraction = completed / total if total else 1.0
    filled = int(fraction * _BAR_WIDTH)
    sizes = (f"{human_bytes(total):>6}" if completed >= total
             else f"{human_bytes(completed):>6}/{human_bytes(total):<6}")
    return f"{label}: {fraction * 100:3.0f}% ▕{'█' * filled}{' ' * (_BAR_WIDTH - filled)}▏ {sizes}"


class ProgressView:
    """Feed it the progress objects of a pull or push; close() when the stream ends."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.tty = out.isatty()
        self._lines: dict[str, str] = {}  # key (a digest or a status) → its text, in order
        self._printed: set[str] = set()  # plain mode: what was written already
        self._drawn = 0
        self._last_draw = 0.0

    def update(self, item: dict[str, Any]) -> None:
        status = str(item.get("status", ""))
        digest = item.get("digest")
        total = 0
        if digest:
            total, completed = int(item.get("total") or 0), int(item.get("completed") or 0)
            key, text = str(digest), _bar(status, total, completed)
            done = completed >= total
        else:
            key, text, done = f"status:{status}", status, True
        new = key not in self._lines
        self._lines[key] = text
        if not self.tty:
            if done and key not in self._printed:
                self._printed.add(key)
                self.out.write(f"{status}: 100% {human_bytes(total)}\n" if digest else f"{status}\n")
                self.out.flush()
        elif new or time.monotonic() - self._last_draw >= _REDRAW_EVERY:
            self._draw()

    def _draw(self) -> None:
        up = f"\x1b[{self._drawn}A" if self._drawn else ""
        self.out.write(up + "".join(f"\r\x1b[K{line}\n" for line in self._lines.values()))
        self.out.flush()
        self._drawn = len(self._lines)
        self._last_draw = time.monotonic()

    def close(self) -> None:
        if self.tty and self._lines:
            self._draw()


def transfer(config: Config, verb: str, name: str, *, insecure: bool) -> None:
    """POST /api/pull or /api/push and show its progress until `success` (or an error)."""
    view = ProgressView(sys.stderr)
    try:
        for item in _stream(config, f"/api/{verb}", {"model": name, "insecure": insecure, "stream": True}):
            view.update(item)
    finally:
        view.close()


def ensure_model(config: Config, name: str, *, insecure: bool) -> None:
    """Ollama's `run`: a model the server does not have is pulled first."""
    try:
        with _client(config) as client:
            missing = client.post("/api/show", json={"model": name}).status_code == 404
    except httpx.ConnectError:
        raise CliError(f"could not connect to herd at {config.base_url}; is `herd serve` running?") from None
    if missing:
        transfer(config, "pull", name, insecure=insecure)
