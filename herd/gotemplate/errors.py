"""The one error type of the template engine, and the resource bounds every parse and render obeys."""

from __future__ import annotations

from dataclasses import dataclass


class TemplateError(ValueError):
    """A template that does not parse, or fails while rendering; `line`/`column` are 1-based when known."""

    def __init__(self, message: str, *, line: int | None = None, column: int | None = None) -> None:
        self.message = message
        self.line = line
        self.column = column
        where = f"{line}:{column}: " if line is not None else ""
        super().__init__(f"template: {where}{message}")


@dataclass(frozen=True, slots=True)
class Limits:
    """Templates come from users (Modelfiles, API requests): bound what one can make the server do."""

    max_source_bytes: int = 1 << 20
    max_output_chars: int = 16 << 20  # the rendering, and any single string a function builds
    max_range_iterations: int = 1 << 20  # summed over every range of one render
    max_steps: int = 1_000_000  # nodes and commands evaluated in one render: about a second of CPU
    max_depth: int = 100  # nesting of blocks and parentheses; {{template}} call depth


DEFAULT_LIMITS = Limits()


def position(source: str, offset: int) -> tuple[int, int]:
    """1-based line and column of a character offset."""
    offset = max(0, min(offset, len(source)))
    line = source.count("\n", 0, offset) + 1
    return line, offset - (source.rfind("\n", 0, offset) + 1) + 1


def error_at(source: str, offset: int, message: str) -> TemplateError:
    line, column = position(source, offset)
    return TemplateError(message, line=line, column=column)
