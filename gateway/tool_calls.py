"""Tool calls parsed out of a model's text, incrementally, as Ollama's tools.Parser does.

A model announces a call with the text its template puts before one (`<tool_call>`,
`[TOOL_CALLS] [`, `Action: ```json\n[`: see gateway/tool_template.py), or, when the template
has none, by answering with a bare JSON object. The parser holds back text that may still
become a tag, passes everything else through as content, and after the tag turns each complete
JSON value into calls: `{"name", "arguments"|"parameters"}` (arguments may be a JSON string),
`{"function": {...}}`, `{"<tool name>": {args}}`, an array of those, or a bare object of
arguments right after the tool's name (`<function=get_weather>{"city": "Paris"}`). Names must
be among the request's tools. Text before the tag is content; text between and after calls is
dropped, as Ollama drops it; if no call ever parses, everything held back is content after all.
"""

from __future__ import annotations

import enum
import json
import secrets
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any, Protocol

NAME_KEYS = ("name", "tool_name")
ARGUMENT_KEYS = ("arguments", "parameters")
_CONTEXT_CHARS = 256  # how much text before an object is searched for a tool's name


def new_call_id() -> str:
    return f"call_{secrets.token_hex(12)}"


@dataclass(frozen=True)
class ParsedCall:
    """One call the model made: `index` counts calls in this answer from 0."""

    name: str
    arguments: dict[str, Any]
    index: int
    id: str

    def arguments_json(self) -> str:
        """The arguments as OpenAI sends them: a JSON string."""
        return json.dumps(self.arguments, ensure_ascii=False, separators=(",", ":"))


Piece = str | ParsedCall  # what the parser hands on, in order: content, or a call


class TextSplitter(Protocol):
    """What a writer feeds the answer's text through: a ToolCallParser, or PlainText."""

    @property
    def calls(self) -> int: ...

    def feed(self, text: str) -> list[Piece]: ...

    def finish(self) -> list[Piece]: ...


class PlainText:
    """No tools in the request: every piece of text is content, exactly as it came."""

    calls = 0

    def feed(self, text: str) -> list[Piece]:
        return [text]

    def finish(self) -> list[Piece]:
        return []


def grouped(pieces: list[Piece]) -> list[str | list[ParsedCall]]:
    """Consecutive calls together, as one chunk carries them."""
    out: list[str | list[ParsedCall]] = []
    for piece in pieces:
        if isinstance(piece, str):
            out.append(piece)
        elif out and isinstance(out[-1], list):
            out[-1].append(piece)
        else:
            out.append([piece])
    return out


class _State(enum.Enum):
    SEARCHING = enum.auto()  # content so far; watching for the tag
    CALLING = enum.auto()  # after the tag: collecting JSON values
    CONTENT = enum.auto()  # no call can follow: everything is content
    FINISHED = enum.auto()  # calls done (or the limit reached): the rest is dropped


def _partial_suffix(text: str, tag: str) -> int:
    """The length of the longest end of `text` that is a beginning of `tag`."""
    for size in range(min(len(text), len(tag) - 1), 0, -1):
        if tag.startswith(text[-size:]):
            return size
    return 0


class ToolCallParser:
    """Feed it the answer's text as it comes; it returns content and calls as soon as they are sure.

    `tag` is what precedes a call; `{` (the default, for templates without one) means a call is
    a JSON value at the very start of the answer, and an answer that starts otherwise is content.
    """

    def __init__(self, names: Collection[str], tag: str = "{", *, max_calls: int | None = None,
                 new_id: Callable[[], str] = new_call_id) -> None:
        self._names = frozenset(names)
        tag = tag.strip()
        self._tag = tag or "{"
        self._bare = self._tag in ("{", "[")  # the call is the JSON itself, not announced
        self._max_calls = max_calls
        self._new_id = new_id
        self._state = _State.SEARCHING
        self._buffer = ""  # received, neither handed on nor settled
        self._held = ""  # settled text after the tag: content if no call ever parses
        self._context = ""  # text since the last call, searched for a name before a bare object
        self._count = 0
        # where the JSON scanner is in the buffer
        self._pos = 0
        self._start = -1
        self._depth = 0
        self._in_string = False
        self._escaped = False

    @property
    def calls(self) -> int:
        """How many calls were parsed so far."""
        return self._count

    def feed(self, text: str) -> list[Piece]:
        if self._state is _State.CONTENT:
            return [text] if text else []
        if self._state is _State.FINISHED:
            return []
        self._buffer += text
        out: list[Piece] = []
        if self._state is _State.SEARCHING and not self._search(out):
            return out
        self._scan(out)
        return out

    def finish(self) -> list[Piece]:
        """The end of the answer: whatever was held back and is content after all."""
        rest = ""
        if self._state is _State.SEARCHING:
            rest = self._buffer
        elif self._state is _State.CALLING and self._count == 0:
            rest = self._held + self._buffer
        self._state, self._buffer, self._held = _State.FINISHED, "", ""
        return [rest] if rest else []

    def _search(self, out: list[Piece]) -> bool:
        """Look for the tag; True once calls may follow."""
        if self._bare:
            stripped = self._buffer.lstrip()
            if not stripped:
                return False  # leading whitespace: wait for the first real character
            if stripped[0] not in "{[":
                out.append(self._buffer)
                self._buffer, self._state = "", _State.CONTENT
                return False
            self._state = _State.CALLING
            return True
        at = self._buffer.find(self._tag)
        if at < 0:
            keep = _partial_suffix(self._buffer, self._tag)
            sure = self._buffer[: len(self._buffer) - keep]
            if sure:
                out.append(sure)
            self._buffer = self._buffer[len(sure):]
            return False
        if at:
            out.append(self._buffer[:at])
        self._held = self._tag
        self._buffer = self._buffer[at + len(self._tag):]
        self._state = _State.CALLING
        return True

    def _scan(self, out: list[Piece]) -> None:
        """Find complete JSON values in the buffer (strings and escapes respected), resuming
        where the last call left off so a long answer is scanned once."""
        buffer, i = self._buffer, self._pos
        while i < len(buffer):
            c = buffer[i]
            i += 1
            if self._start < 0:
                if c in "{[":
                    self._start, self._depth, self._in_string, self._escaped = i - 1, 1, False, False
                continue
            if self._in_string:
                if self._escaped:
                    self._escaped = False
                elif c == "\\":
                    self._escaped = True
                elif c == '"':
                    self._in_string = False
            elif c == '"':
                self._in_string = True
            elif c in "{[":
                self._depth += 1
            elif c in "}]":
                self._depth -= 1
                if self._depth == 0:
                    before, value = buffer[: self._start], buffer[self._start: i]
                    buffer, i, self._start = buffer[i:], 0, -1
                    self._buffer = buffer
                    if not self._settle(before, value, out):
                        return
                    buffer = self._buffer
        self._pos = i

    def _settle(self, before: str, value: str, out: list[Piece]) -> bool:
        """One complete JSON value: calls, or text. False when parsing is over."""
        calls = self._calls(value, (self._context + before)[-_CONTEXT_CHARS:])
        if calls:
            for name, arguments in calls:
                if self._max_calls is not None and self._count >= self._max_calls:
                    break
                out.append(ParsedCall(name, arguments, self._count, self._new_id()))
                self._count += 1
            self._held = self._context = ""
            if self._max_calls is not None and self._count >= self._max_calls:
                self._state, self._buffer = _State.FINISHED, ""
                return False
            return True
        if self._count == 0:
            self._held += before + value
            if self._bare:  # a JSON answer that is not a call: it was content all along
                out.append(self._held + self._buffer)
                self._held, self._buffer, self._state = "", "", _State.CONTENT
                return False
        self._context = (self._context + before + value)[-_CONTEXT_CHARS:]
        return True

    def _calls(self, value: str, context: str) -> list[tuple[str, dict[str, Any]]]:
        try:
            data = json.loads(value)
        except ValueError:
            return []
        if isinstance(data, list):
            calls = [self._call(item, "") for item in data]
            return [c for c in calls if c is not None] if calls and all(calls) else []
        call = self._call(data, context)
        return [call] if call else []

    def _call(self, item: Any, context: str) -> tuple[str, dict[str, Any]] | None:
        if not isinstance(item, dict):
            return None
        function = item.get("function")
        if isinstance(function, dict) and any(isinstance(function.get(k), str) for k in NAME_KEYS):
            item = function  # OpenAI's own shape: {"type": "function", "function": {...}}
        name = next((item[k] for k in NAME_KEYS if isinstance(item.get(k), str)), None)
        if name in self._names:
            parsed = _arguments(next((item[k] for k in ARGUMENT_KEYS if k in item), None))
            return (name, parsed) if parsed is not None else None
        if len(item) == 1:
            (key, inner), = item.items()
            if key in self._names and isinstance(inner, dict):
                return key, inner
        # The name written just before a bare object of arguments: the last one mentioned wins.
        mentioned = [(context.rfind(n), len(n), n) for n in self._names if n in context]
        return (max(mentioned)[2], item) if mentioned else None


def _arguments(value: Any) -> dict[str, Any] | None:
    """A call's arguments as an object: absent or null is `{}`, a JSON string is decoded."""
    if value is None:
        return {}
    if isinstance(value, str):
        try:
            value = json.loads(value) if value.strip() else {}
        except ValueError:
            return None
    return value if isinstance(value, dict) else None


def split_whole(text: str, splitter: TextSplitter) -> tuple[str, list[ParsedCall]]:
    """A whole answer at once: its content and its calls."""
    pieces = splitter.feed(text) + splitter.finish()
    return "".join(p for p in pieces if isinstance(p, str)), [p for p in pieces if isinstance(p, ParsedCall)]


def parse_text(text: str, names: Collection[str], tag: str = "{", *,
               max_calls: int | None = None) -> tuple[str, list[ParsedCall]]:
    return split_whole(text, ToolCallParser(names, tag, max_calls=max_calls))
