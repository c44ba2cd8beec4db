"""The functions a template can call: Go's builtins (text/template/funcs.go) and Ollama's additions."""

from __future__ import annotations

import datetime
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from herd.gotemplate import gofmt, gojson
from herd.gotemplate.values import MISSING, GoSlice, GoStruct, is_nil, truth, type_name

ArgType = Literal["value", "any", "string"]  # reflect.Value, interface{}, string parameters


class CallError(Exception):
    """A function's own error: the renderer reports it as `error calling NAME: ...`."""


@dataclass(frozen=True, slots=True)
class Func:
    call: Callable[[list[Any]], Any]
    params: tuple[ArgType, ...]  # the fixed parameters
    variadic: ArgType | None = None  # the type of the ... parameter, if any


# --- comparison ---------------------------------------------------------------------------

def _kind(v: Any) -> str:
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, int):
        return "int"
    if isinstance(v, float):
        return "float"
    if isinstance(v, str):
        return "string"
    return "invalid"  # nil, or a composite value: not a basic kind


def _eq(args: list[Any]) -> bool:
    a, others = args[0], args[1:]
    if not others:
        raise CallError("missing argument for comparison")
    k1 = _kind(a)
    for b in others:
        k2 = _kind(b)
        if k1 != k2:
            if not is_nil(a) and not is_nil(b):
                raise CallError("incompatible types for comparison")
            continue
        if k1 != "invalid":
            if a == b:
                return True
        elif is_nil(a) or is_nil(b):
            if is_nil(a) and is_nil(b):
                return True
        elif isinstance(a, GoStruct) and isinstance(b, GoStruct) and a.type_name == b.type_name:
            if a == b:
                return True
        else:
            raise CallError(gofmt.sprintf("non-comparable type %s: %v", [b, type_name(b)]))
    return False


def _lt(args: list[Any]) -> bool:
    a, b = args
    k1, k2 = _kind(a), _kind(b)
    if k1 in ("invalid", "bool") or k2 in ("invalid", "bool"):
        raise CallError("invalid type for comparison")
    if k1 != k2:
        raise CallError("incompatible types for comparison")
    return bool(a < b)


def _le(args: list[Any]) -> bool:
    return _lt(args) or _eq(args)


# --- containers -----------------------------------------------------------------------------

def _length(args: list[Any]) -> int:
    v = args[0]
    if is_nil(v):
        raise CallError("len of nil pointer")
    if isinstance(v, str):
        return len(v.encode("utf-8", "replace"))  # Go strings are bytes
    if isinstance(v, (bytes, list, tuple, dict)):
        return len(v)
    raise CallError(f"len of type {type_name(v)}")


def _index_arg(i: Any, cap: int) -> int:
    if is_nil(i):
        raise CallError("cannot index slice/array with nil")
    if not isinstance(i, int) or isinstance(i, bool):
        raise CallError(f"cannot index slice/array with type {type_name(i)}")
    if i < 0 or i > cap:
        raise CallError(f"index out of range: {i}")
    return i


def _index(args: list[Any]) -> Any:
    item = args[0]
    if is_nil(item):
        raise CallError("index of untyped nil")
    for i in args[1:]:
        if is_nil(item):
            raise CallError("index of nil pointer")
        if isinstance(item, str):
            item = item.encode("utf-8", "replace")
        if isinstance(item, (bytes, list, tuple)):
            x = _index_arg(i, len(item))
            if x == len(item):
                raise CallError(f"index out of range: {x}")
            item = item[x]
        elif isinstance(item, dict):
            if not isinstance(i, str):
                raise CallError(f"value has type {type_name(i)}; should be string")
            item = item.get(i)  # a missing key gives the element type's zero: a nil interface
        else:
            raise CallError(f"can't index item of type {type_name(item)}")
    return item


def _slice(args: list[Any]) -> Any:
    item, indexes = args[0], args[1:]
    if is_nil(item):
        raise CallError("slice of untyped nil")
    if len(indexes) > 3:
        raise CallError(f"too many slice indexes: {len(indexes)}")
    data: Any = item.encode("utf-8", "replace") if isinstance(item, str) else item
    if isinstance(item, str) and len(indexes) == 3:
        raise CallError("cannot 3-index slice a string")
    if not isinstance(data, (bytes, list, tuple)):
        raise CallError(f"can't slice item of type {type_name(item)}")
    idx = [0, len(data), len(data)]
    for n, i in enumerate(indexes):
        idx[n] = _index_arg(i, len(data))
    if idx[0] > idx[1]:
        raise CallError(f"invalid slice index: {idx[0]} > {idx[1]}")
    if len(indexes) == 3 and idx[1] > idx[2]:
        raise CallError(f"invalid slice index: {idx[1]} > {idx[2]}")
    part = data[idx[0]:idx[1]]
    if isinstance(part, bytes) and isinstance(item, str):
        return part.decode("utf-8", "replace")
    return item.derive(part) if isinstance(item, GoSlice) else part


# --- printing and escaping ----------------------------------------------------------------

def _eval_args(args: list[Any]) -> str:
    if len(args) == 1 and isinstance(args[0], str):
        return args[0]
    # Go's printableValue turns a nil operand into "<no value>" here (print itself would say <nil>).
    return gofmt.sprint(["<no value>" if is_nil(a) else a for a in args])


_HTML = {'"': "&#34;", "'": "&#39;", "&": "&amp;", "<": "&lt;", ">": "&gt;", "\0": "\ufffd"}
_JS = {"\\": "\\\\", "'": "\\'", '"': '\\"', "<": "\\u003C", ">": "\\u003E", "&": "\\u0026", "=": "\\u003D"}


def _html(args: list[Any]) -> str:
    return "".join(_HTML.get(c, c) for c in _eval_args(args))


def _js_char(c: str) -> str:
    if c in _JS:
        return _JS[c]
    if c < " ":
        return f"\\u00{ord(c):02X}"
    if c >= "\x80" and not c.isprintable():
        return f"\\u{ord(c):04X}"
    return c


def _js(args: list[Any]) -> str:
    return "".join(_js_char(c) for c in _eval_args(args))


def _urlquery(args: list[Any]) -> str:
    return urllib.parse.quote_plus(_eval_args(args), safe="", errors="replace")


def _call(args: list[Any]) -> Any:
    fn = args[0]
    raise CallError("call of nil" if is_nil(fn) else f"non-function {gofmt.value_string(fn)} of type {type_name(fn)}")


# --- Ollama's additions (template/template.go) -------------------------------------------

def _json(args: list[Any]) -> str:
    try:
        return gojson.marshal(args[0])
    except ValueError:
        return ""  # Ollama ignores json.Marshal's error and prints the empty result


_TS_TYPES = {"string": "string", "number": "number", "integer": "number", "boolean": "boolean", "array": "any[]",
             "object": "Record<string, any>", "null": "null"}


def typescript_type(prop: GoStruct) -> str:
    """api.ToolProperty.ToTypeScriptType."""
    any_of = prop.fields.get("AnyOf") or []
    if any_of:
        return " | ".join(typescript_type(p) for p in any_of)
    types = list(prop.fields.get("Type") or [])
    if not types:
        return "any"
    return " | ".join(_TS_TYPES.get(t, "any") for t in types)


def _to_typescript_type(args: list[Any]) -> str:
    v = args[0]
    return typescript_type(v) if isinstance(v, GoStruct) and v.type_name == "api.ToolProperty" else "any"


def _date(days_back: int) -> Callable[[list[Any]], str]:
    def date(args: list[Any]) -> str:  # Ollama accepts a format argument and ignores it
        return (datetime.date.today() - datetime.timedelta(days=days_back)).isoformat()
    return date


GO_BUILTINS: Mapping[str, Func] = {
    "and": Func(lambda a: MISSING, ("value",), "value"),  # short-circuits: the renderer evaluates it
    "or": Func(lambda a: MISSING, ("value",), "value"),
    "not": Func(lambda a: not truth(a[0]), ("value",)),
    "call": Func(_call, ("value",), "value"),
    "len": Func(_length, ("value",)),
    "index": Func(_index, ("value",), "value"),
    "slice": Func(_slice, ("value",), "value"),
    "eq": Func(_eq, ("value",), "value"),
    "ne": Func(lambda a: not _eq(a), ("value", "value")),
    "lt": Func(_lt, ("value", "value")),
    "le": Func(_le, ("value", "value")),
    "gt": Func(lambda a: not _le(a), ("value", "value")),
    "ge": Func(lambda a: not _lt(a), ("value", "value")),
    "print": Func(gofmt.sprint, (), "any"),
    "printf": Func(lambda a: gofmt.sprintf(a[0], a[1:]), ("string",), "any"),
    "println": Func(gofmt.sprintln, (), "any"),
    "html": Func(_html, (), "any"),
    "js": Func(_js, (), "any"),
    "urlquery": Func(_urlquery, (), "any"),
}

OLLAMA_FUNCS: Mapping[str, Func] = {
    **GO_BUILTINS,
    "json": Func(_json, ("any",)),
    "currentDate": Func(_date(0), (), "string"),
    "yesterdayDate": Func(_date(1), (), "string"),
    "toTypeScriptType": Func(_to_typescript_type, ("any",)),
}
