"""Ollama's Modelfile: parse it (parser/parser.go) and write it back (`ollama show --modelfile`).

Grammar, as Ollama reads it:
- one instruction per line, its name case-insensitive and made of letters, then one space or tab;
- `#` starts a comment only at the start of a line;
- an unquoted value runs to the end of the line; `"..."` and `\"\"\"...\"\"\"` values may span lines
  and end at the first line end where the whole (trimmed) value is closed;
- `PARAMETER <name> <value>` with names from [A-Za-z0-9_]; repeated `stop` lines build a list;
- `MESSAGE <role> <text>`; a UTF-8 (or, for bytes, UTF-16) byte order mark is skipped.
Where Ollama is merely lax (empty parameter names, control characters), we report an error or
drop the character instead.
"""

from __future__ import annotations

import codecs
import dataclasses
import logging
import re

from herd.store.options import OptionError, OptionValue, coerce_option, is_deprecated

log = logging.getLogger(__name__)

COMMANDS = ("from", "license", "template", "system", "adapter", "parameter", "message", "requires")
ROLES = ("system", "user", "assistant", "tool")
DEFAULT_TEMPLATE = "{{ .Prompt }}"

_NAME = re.compile(r"[A-Za-z]+")
_PARAM_NAME = re.compile(r"[A-Za-z0-9_]+")
_SEMVER = re.compile(r"v?(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?")
# C0/C1 control characters other than tab and newline carry no meaning in a Modelfile.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


class ModelfileError(ValueError):
    """A Modelfile Ollama would refuse; the message names the line when there is one."""

    def __init__(self, message: str, line: int | None = None) -> None:
        super().__init__(f"(line {line}): {message}" if line else message)
        self.line = line


@dataclasses.dataclass
class Modelfile:
    from_: str
    parameters: dict[str, OptionValue] = dataclasses.field(default_factory=dict)
    template: str | None = None
    system: str | None = None
    adapters: list[str] = dataclasses.field(default_factory=list)
    licenses: list[str] = dataclasses.field(default_factory=list)
    messages: list[tuple[str, str]] = dataclasses.field(default_factory=list)
    requires: str | None = None
    warnings: list[str] = dataclasses.field(default_factory=list)  # e.g. deprecated parameters


def _decode(data: bytes) -> str:
    for bom, codec in ((codecs.BOM_UTF8, "utf-8"), (codecs.BOM_UTF16_LE, "utf-16-le"),
                       (codecs.BOM_UTF16_BE, "utf-16-be")):
        if data.startswith(bom):
            data, encoding = data[len(bom):], codec
            break
    else:
        encoding = "utf-8"
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as exc:
        raise ModelfileError(f"the Modelfile is not valid {encoding.upper()}: {exc.reason} at byte "
                             f"{exc.start}") from exc


def _unquote(value: str) -> str | None:
    """The value without its quotes, or None while a quote is still open (parser.go unquote)."""
    if value.startswith('"""'):
        return value[3:-3] if len(value) >= 6 and value.endswith('"""') else None
    if value.startswith('"'):
        return value[1:-1] if len(value) >= 2 and value.endswith('"') else None
    return value


def _split_word(text: str, pattern: re.Pattern[str]) -> tuple[str, str] | None:
    """`word<space or tab>rest` -> (word, rest), or None if text does not start that way."""
    match = pattern.match(text)
    if match is None or match.end() >= len(text) or text[match.end()] not in " \t":
        return None
    return match.group(), text[match.end() + 1 :]


def _command_error() -> str:
    names = ", ".join(f'"{c}"' for c in COMMANDS[:-1])
    return f'command must be one of {names}, or "{COMMANDS[-1]}"'


def _role_error() -> str:
    return "message role must be one of " + ", ".join(f'"{r}"' for r in ROLES[:-1]) + f', or "{ROLES[-1]}"'


def _set_parameter(mf: Modelfile, name: str, text: str, line: int) -> None:
    if is_deprecated(name):
        mf.warnings.append(f"parameter {name} is deprecated")
        log.warning("Modelfile line %d: parameter %s is deprecated and ignored", line, name)
        return
    try:
        value = coerce_option(name, text, from_text=True)
    except OptionError as exc:
        raise ModelfileError(str(exc), line) from exc
    previous = mf.parameters.get(name)
    if isinstance(value, list) and isinstance(previous, list):
        previous.extend(value)
    else:
        mf.parameters[name] = value


def parse_modelfile(source: str | bytes) -> Modelfile:
    """Parse Modelfile text; raises ModelfileError on anything Ollama would refuse."""
    text = _decode(source) if isinstance(source, bytes) else source
    text = text.removeprefix("\ufeff").replace("\r\n", "\n").replace("\r", "\n")
    lines = _CONTROL.sub("", text).split("\n")
    mf = Modelfile(from_="")
    from_line: int | None = None
    i = 0
    while i < len(lines):
        lineno, stripped = i + 1, lines[i].lstrip(" \t")
        i += 1
        if not stripped or stripped.startswith("#"):
            continue
        parts = _split_word(stripped, _NAME)
        if parts is None or parts[0].lower() not in COMMANDS:
            word = stripped.split(None, 1)[0]
            if word.lower() in COMMANDS and _NAME.fullmatch(word):
                raise ModelfileError(f"missing value for {word.upper()}", lineno)
            raise ModelfileError(_command_error(), lineno)
        command, rest = parts[0].lower(), parts[1]

        argument = ""
        if command in ("parameter", "message"):
            rest = rest.lstrip(" \t")
            pattern = _PARAM_NAME if command == "parameter" else _NAME
            word_rest = _split_word(rest, pattern)
            if word_rest is None:
                if command == "message":
                    raise ModelfileError(_role_error(), lineno)
                word = rest.split(None, 1)[0] if rest.strip() else ""
                if word and _PARAM_NAME.fullmatch(word):
                    raise ModelfileError(f"missing value for parameter {word}", lineno)
                raise ModelfileError(f"invalid parameter name {word!r}: use letters, digits and _", lineno)
            argument, rest = word_rest
            if command == "message" and argument not in ROLES:
                raise ModelfileError(_role_error(), lineno)

        # Extend the value line by line until its quotes close, as Ollama's state machine does.
        value = rest
        while (unquoted := _unquote(value.strip())) is None:
            if i >= len(lines):
                raise ModelfileError(f"unterminated quoted value starting here: {value.strip()[:40]!r}",
                                     lineno)
            value += "\n" + lines[i]
            i += 1

        if command == "from":
            if not unquoted:
                raise ModelfileError("FROM needs a model name or a path", lineno)
            if from_line is not None:
                raise ModelfileError(f"only one FROM line is allowed (first on line {from_line})", lineno)
            mf.from_, from_line = unquoted, lineno
        elif command == "parameter":
            _set_parameter(mf, argument, unquoted, lineno)
        elif command == "message":
            mf.messages.append((argument, unquoted))
        elif command == "template":
            mf.template = unquoted
        elif command == "system":
            mf.system = unquoted
        elif command == "adapter":
            if not unquoted:
                raise ModelfileError("ADAPTER needs a path", lineno)
            mf.adapters.append(unquoted)
        elif command == "license":
            mf.licenses.append(unquoted)
        elif command == "requires":
            if not _SEMVER.fullmatch(unquoted):
                raise ModelfileError("requires must be a valid semver (e.g. 0.14.0)", lineno)
            mf.requires = unquoted.removeprefix("v")
    if from_line is None:
        raise ModelfileError("no FROM line")
    return mf


def _quote(value: str) -> str:
    """parser.go quote(), plus values that start with a quote (Ollama would lose those quotes)."""
    if "\n" in value or value != value.strip(" \t") or value.startswith('"') or not value:
        return f'"""{value}"""' if '"' in value else f'"{value}"'
    return value


def format_value(value: object) -> str:
    """A parameter value as Go's `%v` prints it (true, 0.7, 40)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e21:
        return str(int(value))
    return str(value)


def render_modelfile(mf: Modelfile, *, show_name: str | None = None) -> str:
    """Write a Modelfile back in the order and quoting of `ollama show --modelfile`.

    With `show_name`, prepend the generated-file header that names the model to build from.
    """
    out: list[str] = []
    if show_name is not None:
        out += ['# Modelfile generated by "herd show"',
                "# To build a new Modelfile based on this, replace FROM with:",
                f"# FROM {show_name}", ""]
    out.append(f"FROM {mf.from_}")
    out += [f"ADAPTER {_quote(a)}" for a in mf.adapters]
    if mf.template is not None:
        out.append(f"TEMPLATE {_quote(mf.template)}")
    if mf.system:
        out.append(f"SYSTEM {_quote(mf.system)}")
    if mf.requires:
        out.append(f"REQUIRES {mf.requires}")
    for name in sorted(mf.parameters):
        value = mf.parameters[name]
        for item in value if isinstance(value, list) else [value]:
            out.append(f"PARAMETER {name} {_quote(format_value(item))}")
    out += [f"LICENSE {_quote(text)}" for text in mf.licenses]
    out += [f"MESSAGE {role} {_quote(content)}" for role, content in mf.messages]
    return "\n".join(out) + "\n"
