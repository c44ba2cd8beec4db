"""Go's fmt package for template values: Sprint, Sprintln, Sprintf and the %v form that actions print."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

from herd.gotemplate.lexer import go_quote
from herd.gotemplate.values import MISSING, GoMap, GoSlice, GoStruct, as_items, sorted_items, type_name

_MAX_WIDTH = 1_000_000  # Go's fmt refuses widths and precisions beyond this too


@dataclass(frozen=True, slots=True)
class _Spec:
    plus: bool = False
    minus: bool = False
    sharp: bool = False
    space: bool = False
    zero: bool = False
    width: int | None = None
    prec: int | None = None


_PLAIN = _Spec()


def shortest_digits(f: float) -> tuple[str, int]:
    """The shortest round-trip digits of abs(f) and their decimal point: abs(f) = 0.DIGITS * 10**dp."""
    mantissa, _, exponent = repr(abs(f)).partition("e")
    whole, _, frac = mantissa.partition(".")
    digits = whole + frac
    dp = len(whole) + (int(exponent) if exponent else 0)
    stripped = digits.lstrip("0")
    dp -= len(digits) - len(stripped)
    stripped = stripped.rstrip("0")
    return (stripped, dp) if stripped else ("0", 1)


def _exp_form(digits: str, dp: int, upper: bool = False) -> str:
    exp = dp - 1
    mantissa = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
    return f"{mantissa}{'E' if upper else 'e'}{'-' if exp < 0 else '+'}{abs(exp):02d}"


def _fixed_form(digits: str, dp: int) -> str:
    if dp <= 0:
        return "0." + "0" * -dp + digits
    if dp >= len(digits):
        return digits + "0" * (dp - len(digits))
    return digits[:dp] + "." + digits[dp:]


def format_float(f: float, verb: str = "v", prec: int | None = None) -> str:
    """strconv.FormatFloat as fmt uses it (sign included, no padding); verb in v e E f F g G."""
    if math.isnan(f):
        return "NaN"
    if math.isinf(f):
        return "+Inf" if f > 0 else "-Inf"
    sign = "-" if math.copysign(1.0, f) < 0 else ""
    if verb in "eEfF":
        return format(f, f".{6 if prec is None else prec}{verb}")
    if prec is not None:
        return format(f, f".{max(prec, 1) if prec else 1}{verb.replace('v', 'g')}")
    digits, dp = shortest_digits(f)
    if f == 0:
        digits, dp = "0", 1
    exp = dp - 1
    if exp < -4 or exp >= 6:  # %v/%g at shortest precision switches to %e from 1e+06 on
        return sign + _exp_form(digits, dp, verb == "G")
    return sign + _fixed_form(digits, dp)


def hex_float(f: float, verb: str = "x") -> str:
    """%x of a float: 0x1.cp+01, Go's shortest hexadecimal mantissa with a binary exponent."""
    if math.isnan(f) or math.isinf(f):
        return format_float(f)
    sign = "-" if math.copysign(1.0, f) < 0 else ""
    if f == 0:
        text = "0x0p+00"
    else:
        mantissa, exp = math.frexp(abs(f))  # abs(f) = mantissa * 2**exp, 0.5 <= mantissa < 1
        frac = format(int((mantissa * 2 - 1) * (1 << 52)), "013x").rstrip("0")
        exp -= 1
        text = f"0x1{'.' + frac if frac else ''}p{'-' if exp < 0 else '+'}{abs(exp):02d}"
    return sign + (text.upper() if verb == "X" else text)


class _Printer:
    def __init__(self) -> None:
        self.buf: list[str] = []

    def pad(self, s: str, spec: _Spec) -> None:
        width = spec.width
        if width is None or len(s) >= width:
            self.buf.append(s)
        elif spec.minus:
            self.buf.append(s + " " * (width - len(s)))
        else:
            self.buf.append(("0" if spec.zero else " ") * (width - len(s)) + s)

    def bad_verb(self, verb: str, v: Any, spec: _Spec) -> None:
        if v is None or v is MISSING:
            self.buf.append(f"%!{verb}(<nil>)")
            return
        self.buf.append(f"%!{verb}({type_name(v)}=")
        self.print_arg(v, "v", spec)  # with the directive's flags and width, as Go does
        self.buf.append(")")

    def print_arg(self, v: Any, verb: str, spec: _Spec, depth: int = 0, deref: bool = False) -> None:
        if verb == "T":
            self.pad("<nil>" if v is None or v is MISSING else type_name(v), spec)
            return
        if v is None or v is MISSING:
            if verb == "v" or depth:  # inside a composite value, nil prints as <nil> whatever the verb
                self.pad("<nil>", spec)
            else:
                self.bad_verb(verb, v, spec)
            return
        hook = getattr(v, "string", None) if isinstance(v, (GoSlice, GoMap, GoStruct)) else None
        if hook is not None and verb in "vsxXq":
            self.fmt_string(hook(v), verb, spec)
            return
        if isinstance(v, bool):
            if verb in "tv":
                self.pad("true" if v else "false", spec)
            else:
                self.bad_verb(verb, v, spec)
        elif isinstance(v, int):
            self.fmt_int(v, verb, spec)
        elif isinstance(v, float):
            self.fmt_float(v, verb, spec)
        elif isinstance(v, str):
            self.fmt_string(v, verb, spec)
        elif isinstance(v, bytes) and verb in "sqxX":
            self.fmt_string(v.decode("utf-8", "replace"), verb, spec)
        elif isinstance(v, GoStruct):
            self.buf.append("&{" if v.pointer and depth == 0 and not deref else "{")
            for i, (name, field) in enumerate(v.fields.items()):
                self.buf.append((" " if i else "") + (f"{name}:" if spec.plus and verb == "v" else ""))
                self.print_arg(field, verb, spec, depth + 1)
            self.buf.append("}")
        elif isinstance(v, dict):
            self.buf.append("map[")
            for i, (key, value) in enumerate(sorted_items(v)):
                self.buf.append(" " if i else "")
                self.print_arg(key, verb, spec, depth + 1)
                self.buf.append(":")
                self.print_arg(value, verb, spec, depth + 1)
            self.buf.append("]")
        elif (items := as_items(v)) is not None:
            self.buf.append("[")
            for i, item in enumerate(items):
                self.buf.append(" " if i else "")
                self.print_arg(item, verb, spec, depth + 1)
            self.buf.append("]")
        else:
            self.bad_verb(verb, v, spec)

    def fmt_int(self, v: int, verb: str, spec: _Spec) -> None:
        if verb == "c":
            self.pad(chr(v) if 0 <= v <= 0x10FFFF else "\ufffd", spec)
            return
        if verb == "q":
            self.pad(_quote_rune(v), spec)
            return
        if verb == "U":
            text = f"U+{v:04X}" if v >= 0 else f"U+{v & 0xFFFFFFFFFFFFFFFF:04X}"
            if spec.sharp and 0 <= v <= 0x10FFFF and chr(v).isprintable():
                text += f" '{chr(v)}'"
            self.pad(text, spec)
            return
        bases = {"d": ("d", ""), "v": ("d", ""), "b": ("b", "0b"), "o": ("o", "0"), "O": ("o", "0o"),
                 "x": ("x", "0x"), "X": ("X", "0X")}
        if verb not in bases:
            self.bad_verb(verb, v, spec)
            return
        code, prefix = bases[verb]
        digits = format(abs(v), code)
        if spec.prec is not None:
            if spec.prec == 0 and v == 0:
                self.pad("", replace(spec, zero=False))
                return
            digits = digits.rjust(spec.prec, "0")
        sign = "-" if v < 0 else "+" if spec.plus else " " if spec.space else ""
        if not (spec.sharp and verb in "boxX") and verb != "O":
            prefix = ""
        if spec.zero and not spec.minus and spec.width is not None and spec.prec is None:
            digits = digits.rjust(spec.width - len(sign), "0")  # like Go, the 0x prefix is not counted
        self.pad(sign + prefix + digits, replace(spec, zero=False))

    def fmt_float(self, v: float, verb: str, spec: _Spec) -> None:
        if verb in "xX":
            self.pad(hex_float(v, verb), spec)
            return
        if verb not in "veEfFgG":
            self.bad_verb(verb, v, spec)
            return
        text = format_float(v, verb, spec.prec)
        if text[0] not in "+-" and (spec.plus or spec.space):
            text = ("+" if spec.plus else " ") + text
        if text.lstrip("+-") in ("Inf", "NaN"):
            self.pad(text, replace(spec, zero=False))
        elif spec.zero and not spec.minus and spec.width is not None and text[0] in "+- ":
            self.buf.append(text[0] + text[1:].rjust(spec.width - 1, "0"))
        else:
            self.pad(text, spec)

    def fmt_string(self, s: str, verb: str, spec: _Spec) -> None:
        if verb in "vs":
            self.pad(s if spec.prec is None else s[:spec.prec], spec)
        elif verb == "q":
            if spec.sharp and "`" not in s and all(c == "\t" or c.isprintable() for c in s):
                self.pad(f"`{s}`", spec)
            else:
                self.pad(go_quote(s, ascii_only=spec.plus), spec)
        elif verb in "xX":
            data = s.encode("utf-8", "replace")
            if spec.prec is not None:
                data = data[:spec.prec]
            prefix = ("0" + verb) if spec.sharp else ""
            digits = [format(b, "02x" if verb == "x" else "02X") for b in data]
            if spec.space:  # "% x": one byte a group, each with the prefix
                self.pad(" ".join(prefix + d for d in digits), spec)
            else:
                self.pad(prefix + "".join(digits), spec)
        else:
            self.bad_verb(verb, s, spec)


def _quote_rune(v: int) -> str:
    if not 0 <= v <= 0x10FFFF or 0xD800 <= v <= 0xDFFF:
        return "'\ufffd'"
    c = chr(v)
    if c == "'":
        return "'\\''"
    inner = go_quote(c)[1:-1]
    return "'" + ('"' if inner == '\\"' else inner) + "'"


def value_string(v: Any, *, deref: bool = False) -> str:
    """fmt's %v of one value; deref prints a *struct as the struct, as an action's output does."""
    p = _Printer()
    p.print_arg(v, "v", _PLAIN, deref=deref)
    return "".join(p.buf)


def sprint(args: list[Any]) -> str:
    """fmt.Sprint: a space between operands when neither is a string."""
    out: list[str] = []
    prev_string = False
    for i, arg in enumerate(args):
        is_string = isinstance(arg, str)
        if i and not is_string and not prev_string:
            out.append(" ")
        out.append(value_string(arg))
        prev_string = is_string
    return "".join(out)


def sprintln(args: list[Any]) -> str:
    return " ".join(value_string(a) for a in args) + "\n"


def _number(fmt: str, i: int) -> tuple[int | None, int]:
    start = i
    while i < len(fmt) and fmt[i].isdigit() and fmt[i].isascii():
        i += 1
    return (int(fmt[start:i]) if i > start else None), i


def sprintf(fmt: str, args: list[Any]) -> str:
    """fmt.Sprintf with Go's flags, width, precision (also *), verbs, and its %!x(...) error forms."""
    p = _Printer()
    arg_num, i, n = 0, 0, len(fmt)
    while i < n:
        j = fmt.find("%", i)
        if j < 0:
            p.buf.append(fmt[i:])
            break
        p.buf.append(fmt[i:j])
        i = j + 1
        flags = {"plus": False, "minus": False, "sharp": False, "space": False, "zero": False}
        names = {"+": "plus", "-": "minus", "#": "sharp", " ": "space", "0": "zero"}
        while i < n and fmt[i] in names:
            flags[names[fmt[i]]] = True
            i += 1
        width: int | None = None
        prec: int | None = None
        if i < n and fmt[i] == "*":
            i += 1
            if arg_num < len(args) and isinstance(args[arg_num], int) and not isinstance(args[arg_num], bool) \
                    and abs(args[arg_num]) <= _MAX_WIDTH:
                width = args[arg_num]
                if width < 0:
                    flags["minus"], width = True, -width
            else:
                p.buf.append("%!(BADWIDTH)")
            arg_num += 1
        else:
            width, i = _number(fmt, i)
            if width is not None and width > _MAX_WIDTH:
                p.buf.append("%!(BADWIDTH)")
                width = None
        if i < n and fmt[i] == ".":
            i += 1
            if i < n and fmt[i] == "*":
                i += 1
                if arg_num < len(args) and isinstance(args[arg_num], int) and not isinstance(args[arg_num], bool) \
                        and 0 <= args[arg_num] <= _MAX_WIDTH:
                    prec = args[arg_num]
                else:
                    p.buf.append("%!(BADPREC)")
                arg_num += 1
            else:
                prec, i = _number(fmt, i)
                prec = prec or 0
                if prec > _MAX_WIDTH:
                    p.buf.append("%!(BADPREC)")
                    prec = None
        if flags["minus"]:
            flags["zero"] = False
        if i >= n:
            p.buf.append("%!(NOVERB)")
            break
        verb = fmt[i]
        i += 1
        spec = _Spec(width=width, prec=prec, **flags)
        if verb == "%":
            p.buf.append("%")
        elif arg_num >= len(args):
            p.buf.append(f"%!{verb}(MISSING)")
        else:
            p.print_arg(args[arg_num], verb, spec)
            arg_num += 1
    if arg_num < len(args):
        extras = []
        for arg in args[arg_num:]:
            extras.append("<nil>" if arg is None or arg is MISSING else f"{type_name(arg)}={value_string(arg)}")
        p.buf.append("%!(EXTRA " + ", ".join(extras) + ")")
    return "".join(p.buf)
