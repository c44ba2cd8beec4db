"""JSON schema → llama.cpp grammar (GBNF), for structured outputs and forced tool calls.

The conversion is llama.cpp's own (`llama_cpp.llama_grammar.SchemaConverter`, a port of
`json-schema-to-grammar`), with one change: a string character may not be a raw control
character, so every string the grammar admits is one that strict JSON parsers accept.
Whitespace between tokens is at most one space (the converter's rule), so a model cannot
run away in whitespace, and the grammar ends right after the closing bracket: once it is
complete, the only tokens left are end-of-generation ones.

Compiled grammars are cached by schema (canonical JSON) in a bounded LRU; the per-sequence
grammar state is llama.cpp's, built from the cached text for each sequence.
"""

from __future__ import annotations

import functools
from typing import Any

import llama_cpp.llama_grammar as _llama_grammar
import msgspec

from herd.json_schema import normalized, unsupported
from herd.protocol import OutputFormat

# Untyped library code: typed at this module's surface instead.
llama_grammar: Any = _llama_grammar

ANY_OBJECT: dict[str, Any] = {"type": "object"}  # `format: "json"`, `json_object`: any JSON object
CACHE_SIZE = 128

# JSON forbids U+0000..U+001F unescaped inside strings; the stock rule only excludes `"` and `\`.
_CHAR = llama_grammar.BuiltinRule(
    r'[^"\\\x7F\x00-\x1F] | "\\" (["\\/bfnrt] | "u" [0-9a-fA-F] [0-9a-fA-F] [0-9a-fA-F] [0-9a-fA-F])', []
)


class GrammarError(ValueError):
    """The schema cannot be turned into a grammar; the request is at fault (400)."""


class _Converter(llama_grammar.SchemaConverter):  # type: ignore[misc]  # subclassing Any
    def _add_primitive(self, name: str, rule: Any) -> Any:
        return super()._add_primitive(name, _CHAR if name == "char" else rule)


@functools.lru_cache(maxsize=CACHE_SIZE)
def _compile(canonical: str) -> str:
    schema = msgspec.json.decode(canonical)
    problem = unsupported(schema)
    if problem:
        raise GrammarError(f"unsupported JSON schema: {problem}")
    converter = _Converter(prop_order={}, allow_fetch=False, dotall=False, raw_pattern=False)
    try:
        resolved = converter.resolve_refs(normalized(schema), "input")
        converter.visit(resolved, "")
        return str(converter.format_grammar())
    except RecursionError:
        raise GrammarError("the JSON schema is nested too deeply") from None
    # The converter reports what it cannot express with asserts and lookups that fail.
    except (AssertionError, ValueError, KeyError, TypeError, AttributeError, IndexError) as exc:
        raise GrammarError(f"unsupported JSON schema: {exc or type(exc).__name__}") from None


def gbnf(output: OutputFormat) -> str:
    """The grammar for an output format; raises GrammarError for a schema it cannot express."""
    schema = ANY_OBJECT if output.json_schema is None else output.json_schema
    # Key order is kept: it is the order in which the grammar has the properties written.
    return _compile(msgspec.json.encode(schema).decode())


def cache_info() -> Any:
    return _compile.cache_info()
