"""Incremental detokenization with stop strings.

Token pieces are raw bytes: a multi-byte character may be split across tokens, and a stop
string may be split across tokens too. `TextStream` only lets text out once it is complete
UTF-8 and can no longer turn out to be the start of a stop string.
"""

from __future__ import annotations

import codecs


class TextStream:
    """Feed token pieces, get back text that is safe to show the client."""

    __slots__ = ("_decoder", "_held", "_longest_stop", "_stopped", "_stops", "decoded")

    def __init__(self, stop: list[str] | None = None) -> None:
        # An empty stop string would match everywhere: ignore it.
        self._stops = [s for s in dict.fromkeys(stop or []) if s]
        self._longest_stop = max((len(s) for s in self._stops), default=0)
        # Holds back an incomplete trailing multi-byte sequence; replaces invalid bytes.
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._held = ""  # decoded text that may still be the start of a stop string
        self._stopped = False
        self.decoded = 0  # characters decoded so far, released or held: where the next token's text begins

    @property
    def stopped(self) -> bool:
        return self._stopped

    def feed(self, piece: bytes) -> tuple[str, bool]:
        """Add one token's bytes. Returns (text to emit now, whether a stop string matched)."""
        if self._stopped:
            return "", True
        text = self._decoder.decode(piece)
        self.decoded += len(text)
        if not self._stops:
            return text, False
        return self._release(self._held + text)

    def flush(self) -> str:
        """End of generation: everything held back that did not become a stop string."""
        if self._stopped:
            return ""
        tail = self._decoder.decode(b"", final=True)  # a truncated character becomes U+FFFD
        text, _ = self._release(self._held + tail)
        out = text if self._stopped else text + self._held
        self._held = ""
        return out

    def _release(self, held: str) -> tuple[str, bool]:
        # Text before the earliest stop match goes out; the stop and all after it never do.
        cut = -1
        for s in self._stops:
            i = held.find(s)
            if i != -1 and (cut == -1 or i < cut):
                cut = i
        if cut != -1:
            self._held = ""
            self._stopped = True
            return held[:cut], True
        # Keep the longest tail that is a proper prefix of some stop: it may still complete.
        keep = 0
        for k in range(min(len(held), self._longest_stop - 1), 0, -1):
            tail = held[-k:]
            if any(s.startswith(tail) for s in self._stops):
                keep = k
                break
        if keep:
            self._held = held[-keep:]
            return held[:-keep], False
        self._held = ""
        return held, False
