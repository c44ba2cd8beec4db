"""encoding/json.Marshal for template values: compact, map keys sorted, HTML-escaped, Go's float format."""

from __future__ import annotations

import base64
import math
from typing import Any

from herd.gotemplate.gofmt import shortest_digits
from herd.gotemplate.values import MISSING, GoMap, GoSlice, GoStruct

_SHORT = {"\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t", '"': '\\"', "\\": "\\\\"}
# Go escapes these even inside strings so JSON can sit in HTML: <, >, & and the JS line separators.
_ALWAYS = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}


def quote(s: str) -> str:
    out = ['"']
    for ch in s:
        if ch in _SHORT:
            out.append(_SHORT[ch])
        elif ch in _ALWAYS:
            out.append(_ALWAYS[ch])
        elif ch < " ":
            out.append(f"\\u{ord(ch):04x}")
        elif "\ud800" <= ch <= "\udfff":
            out.append("\\ufffd")  # a lone surrogate is invalid UTF-8 to Go
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def _float(f: float) -> str:
    if math.isnan(f) or math.isinf(f):
        raise ValueError(f"json: unsupported value: {f}")
    if f == 0:
        return "-0" if math.copysign(1.0, f) < 0 else "0"
    sign = "-" if f < 0 else ""
    digits, dp = shortest_digits(f)
    if abs(f) < 1e-6 or abs(f) >= 1e21:
        exp = dp - 1
        mantissa = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
        return f"{sign}{mantissa}e{'-' if exp < 0 else '+'}{abs(exp)}"  # Go writes e-7, not e-07
    if dp <= 0:
        return f"{sign}0.{'0' * -dp}{digits}"
    if dp >= len(digits):
        return sign + digits + "0" * (dp - len(digits))
    return f"{sign}{digits[:dp]}.{digits[dp:]}"


def _is_empty(v: Any, option: str) -> bool:
    if v is None or v is MISSING or (isinstance(v, (GoSlice, GoMap)) and v.nil):
        return True
    if option == "omitnil":  # omitempty on an interface or pointer field: only nil is empty
        return False
    if isinstance(v, (bool, int, float)):
        return not v
    if isinstance(v, (str, bytes, list, tuple, dict)):
        return len(v) == 0
    return False


def _object(items: list[tuple[str, Any]], out: list[str]) -> None:
    out.append("{")
    for i, (key, value) in enumerate(items):
        if i:
            out.append(",")
        out.append(quote(key))
        out.append(":")
        _encode(value, out)
    out.append("}")


def _key(k: Any) -> str:
    if isinstance(k, str):
        return k
    if isinstance(k, int) and not isinstance(k, bool):
        return str(k)
    raise ValueError(f"json: unsupported map key {k!r}")


def _encode(v: Any, out: list[str]) -> None:
    if v is None or v is MISSING:
        out.append("null")
    elif isinstance(v, bool):
        out.append("true" if v else "false")
    elif isinstance(v, int):
        out.append(str(v))
    elif isinstance(v, float):
        out.append(_float(v))
    elif isinstance(v, str):
        out.append(quote(v))
    elif isinstance(v, bytes):
        out.append(quote(base64.b64encode(v).decode("ascii")))
    elif isinstance(v, GoStruct):
        items = []
        for name, value in v.fields.items():
            key, option = v.tags.get(name, (name, ""))
            if key != "-" and not (option and _is_empty(value, option)):
                items.append((key, value))
        _object(items, out)
    elif isinstance(v, GoSlice) and v.marshal is not None:
        _encode(v.marshal(v), out)
    elif isinstance(v, (GoSlice, GoMap)) and v.nil:
        out.append("null")
    elif isinstance(v, dict):
        pairs = [(_key(k), value) for k, value in v.items()]
        _object(pairs if isinstance(v, GoMap) and v.ordered else sorted(pairs, key=lambda kv: kv[0]), out)
    elif isinstance(v, (list, tuple)):
        out.append("[")
        for i, item in enumerate(v):
            if i:
                out.append(",")
            _encode(item, out)
        out.append("]")
    else:
        raise ValueError(f"json: unsupported type {type(v).__name__}")


def marshal(v: Any) -> str:
    """json.Marshal(v) as a string; raises ValueError where Go returns an error (NaN, infinities)."""
    out: list[str] = []
    _encode(v, out)
    return "".join(out)
