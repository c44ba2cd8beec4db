"""Go literal syntax inside actions: strconv.Unquote for strings and characters, and number constants."""

from __future__ import annotations

import re

from herd.gotemplate.lexer import go_quote

_SIMPLE = {"a": 7, "b": 8, "f": 12, "n": 10, "r": 13, "t": 9, "v": 11, "\\": 92}
_HEX = {"x": 2, "u": 4, "U": 8}


def _unquote_char(s: str, i: int, quote: str) -> tuple[int, bool, int]:
    """One character or escape at s[i]: (value, is a raw byte, next index). Raises ValueError."""
    c = s[i]
    if c == quote and quote in "'\"":
        raise ValueError("unescaped quote")
    if c != "\\":
        return ord(c), False, i + 1
    if i + 1 >= len(s):
        raise ValueError("trailing backslash")
    e = s[i + 1]
    if e in _SIMPLE:
        return _SIMPLE[e], False, i + 2
    if e in "'\"":
        if e != quote:
            raise ValueError("wrong quote escaped")
        return ord(e), False, i + 2
    if e in _HEX:
        digits = s[i + 2:i + 2 + _HEX[e]]
        if len(digits) != _HEX[e] or not all(d in "0123456789abcdefABCDEF" for d in digits):
            raise ValueError("bad hex escape")
        v = int(digits, 16)
        if e == "x":
            return v, quote != "'", i + 2 + _HEX[e]  # \xNN is a byte in a string, a rune in a char
        if v > 0x10FFFF or 0xD800 <= v <= 0xDFFF:
            raise ValueError("invalid rune")
        return v, False, i + 2 + _HEX[e]
    if e in "01234567":
        digits = s[i + 1:i + 4]
        if len(digits) != 3 or not all(d in "01234567" for d in digits) or int(digits, 8) > 255:
            raise ValueError("bad octal escape")
        return int(digits, 8), quote != "'", i + 4
    raise ValueError("unknown escape")


def unquote(quoted: str) -> str:
    """strconv.Unquote of a "double-quoted" or `raw` Go string literal. Raises ValueError."""
    if len(quoted) < 2 or quoted[0] != quoted[-1] or quoted[0] not in "\"`":
        raise ValueError("invalid syntax")
    body = quoted[1:-1]
    if quoted[0] == "`":
        if "`" in body:
            raise ValueError("invalid syntax")
        return body.replace("\r", "")  # Go drops carriage returns from raw strings
    if "\n" in body:
        raise ValueError("invalid syntax")
    out = bytearray()
    i = 0
    while i < len(body):
        value, raw_byte, i = _unquote_char(body, i, '"')
        out += bytes([value]) if raw_byte else chr(value).encode("utf-8", "surrogatepass")
    # \x and octal escapes can build invalid UTF-8; Go keeps those bytes, a str cannot.
    return out.decode("utf-8", "replace")


def char_value(quoted: str) -> int:
    """The rune of a 'c' character constant. Raises ValueError."""
    if len(quoted) < 3 or quoted[0] != "'" or quoted[-1] != "'":
        raise ValueError("malformed character constant")
    value, _, end = _unquote_char(quoted, 1, "'")
    if end != len(quoted) - 1:
        raise ValueError(f"malformed character constant: {quoted}")
    return value


_OCTAL = re.compile(r"0[0-7_]+")
_INT64 = 1 << 63


def number_value(text: str) -> int | float:
    """A number constant the way text/template types it: int unless it is written as a float."""
    body = text.lstrip("+-")
    negative = text.startswith("-")
    lower = body.lower()
    try:
        if lower.startswith("0x") and "p" in lower:
            value: int | float = float.fromhex(body.replace("_", ""))
        elif lower.startswith(("0x", "0o", "0b")):
            value = int(body, 0)
        elif any(c in lower for c in ".e"):
            if "__" in body or body.startswith("_") or body.endswith("_"):
                raise ValueError(text)
            value = float(body)
        elif _OCTAL.fullmatch(body):
            value = int(body.replace("_", ""), 8)
        elif len(body) > 1 and body[0] == "0":  # 08: not octal, so Go ends up calling it an overflow
            raise ValueError(f"integer overflow: {go_quote(text)}") from None
        else:
            value = int(body, 10)
    except ValueError as exc:
        if str(exc).startswith("integer overflow"):
            raise
        raise ValueError(f"illegal number syntax: {go_quote(text)}") from None
    if negative:
        value = -value
    if isinstance(value, int) and not -_INT64 <= value < 2 * _INT64:
        raise ValueError(f"integer overflow: {go_quote(text)}")
    return value  # past int64 Go still parses it (as uint64), then fails when the template runs
