"""Go text/template lexer: source text to tokens, following text/template/parse/lex.go state by state.

Trim markers (`{{- ` and ` -}}`) are applied here, exactly as Go does: the whitespace (space, tab,
CR, LF) next to the delimiter is dropped from the neighbouring text. Comments are dropped too.
"""

from __future__ import annotations

import unicodedata
from typing import NamedTuple

from herd.gotemplate.errors import TemplateError, error_at

SPACE_CHARS = " \t\r\n"
LEFT_DELIM, RIGHT_DELIM = "{{", "}}"
LEFT_COMMENT, RIGHT_COMMENT = "/*", "*/"


class Tok:
    """Token kinds: plain strings rather than an Enum, which is slow to look up in the hot loops.

    Every token's kind is one of these very objects, so kinds are compared with `is`.
    """

    TEXT = "text"
    LEFT_DELIM = "{{"
    RIGHT_DELIM = "}}"
    SPACE = "space"
    IDENTIFIER = "identifier"
    FIELD = "field"
    VARIABLE = "variable"
    DOT = "."
    STRING = "string"
    RAW_STRING = "raw string"
    NUMBER = "number"
    CHAR_CONSTANT = "character constant"
    BOOL = "bool"
    NIL = "nil"
    PIPE = "|"
    ASSIGN = "="
    DECLARE = ":="
    LEFT_PAREN = "("
    RIGHT_PAREN = ")"
    CHAR = "char"  # any other printable ASCII, e.g. the comma in `$i, $v :=`
    EOF = "EOF"
    ERROR = "error"  # a lexical error: the parser reports it when it gets there, as Go's does
    # keywords
    BLOCK = "block"
    BREAK = "break"
    CONTINUE = "continue"
    DEFINE = "define"
    ELSE = "else"
    END = "end"
    IF = "if"
    RANGE = "range"
    TEMPLATE = "template"
    WITH = "with"


# word → its kind: the Tok object itself, so that a word cut from the source gets the canonical kind
KEYWORDS = {kind: kind for kind in (Tok.BLOCK, Tok.BREAK, Tok.CONTINUE, Tok.DEFINE, Tok.ELSE, Tok.END, Tok.IF,
                                    Tok.NIL, Tok.RANGE, Tok.TEMPLATE, Tok.WITH)}


class Token(NamedTuple):
    kind: str  # a Tok
    val: str
    pos: int  # character offset in the source

    def describe(self) -> str:
        """How Go's parser names a token in "unexpected ..." errors."""
        if self.kind is Tok.EOF:
            return "EOF"
        if self.kind in KEYWORDS.values() or self.kind is Tok.DOT:
            return f"<{self.val}>"
        if len(self.val) > 10:
            return go_quote(self.val[:10]) + "..."
        return go_quote(self.val)


def is_alnum(c: str) -> bool:
    return c == "_" or c.isalpha() or unicodedata.category(c) == "Nd"


def unicode_repr(c: str) -> str:
    """Go's %#U: U+0041 'A'."""
    return f"U+{ord(c):04X} '{c}'" if c.isprintable() else f"U+{ord(c):04X}"


def go_quote(s: str, *, ascii_only: bool = False) -> str:
    """strconv.Quote: a double-quoted Go string literal."""
    out = ['"']
    for ch in s:
        o = ord(ch)
        if ch in '"\\':
            out.append("\\" + ch)
        elif ch.isprintable() and not (ascii_only and o > 0x7E):
            out.append(ch)
        elif ch in _SHORT_ESCAPES:
            out.append(_SHORT_ESCAPES[ch])
        elif o < 0x80:
            out.append(f"\\x{o:02x}")
        elif 0xD800 <= o <= 0xDFFF:
            out.append("\\ufffd")
        elif o < 0x10000:
            out.append(f"\\u{o:04x}")
        else:
            out.append(f"\\U{o:08x}")
    out.append('"')
    return "".join(out)


_SHORT_ESCAPES = {"\a": "\\a", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\v": "\\v"}


_SIMPLE_TOKENS = {"=": Tok.ASSIGN, "|": Tok.PIPE}


class _Lexer:
    def __init__(self, src: str) -> None:
        self.src = src
        self.n = len(src)
        self.pos = 0
        self.start = 0
        self.paren_depth = 0
        self.tokens: list[Token] = []

    def fail(self, message: str) -> TemplateError:
        return error_at(self.src, self.start, message)

    def emit(self, kind: str) -> None:
        self.tokens.append(Token(kind, self.src[self.start:self.pos], self.start))
        self.start = self.pos

    def peek(self) -> str:
        return self.src[self.pos] if self.pos < self.n else ""

    def has_left_trim(self, at: int) -> bool:
        return self.src.startswith("-", at) and at + 1 < self.n and self.src[at + 1] in SPACE_CHARS

    def at_right_delim(self) -> tuple[bool, bool]:
        """(at a closing delimiter, it carries a trim marker)."""
        p = self.pos
        if p + 1 < self.n and self.src[p] in SPACE_CHARS and self.src[p + 1] == "-" \
                and self.src.startswith(RIGHT_DELIM, p + 2):
            return True, True
        return self.src.startswith(RIGHT_DELIM, p), False

    def at_terminator(self) -> bool:
        c = self.peek()
        return c == "" or c in SPACE_CHARS or c in ".,|:)(" or self.src.startswith(RIGHT_DELIM, self.pos)

    def skip_left_trim(self) -> None:
        while self.pos < self.n and self.src[self.pos] in SPACE_CHARS:
            self.pos += 1

    def run(self) -> list[Token]:
        while True:
            x = self.src.find(LEFT_DELIM, self.pos)
            if x < 0:
                self.pos = self.n
                if self.pos > self.start:
                    self.emit(Tok.TEXT)
                self.tokens.append(Token(Tok.EOF, "", self.n))
                return self.tokens
            end = x
            if self.has_left_trim(x + len(LEFT_DELIM)):
                while end > self.start and self.src[end - 1] in SPACE_CHARS:
                    end -= 1
            if end > self.start:
                self.pos = end
                self.emit(Tok.TEXT)
            self.start = self.pos = x
            self.left_delim()

    def left_delim(self) -> None:
        self.pos += len(LEFT_DELIM)
        after = 2 if self.has_left_trim(self.pos) else 0
        if self.src.startswith(LEFT_COMMENT, self.pos + after):
            self.pos += after
            self.comment()
            return
        self.emit(Tok.LEFT_DELIM)
        self.pos += after
        self.start = self.pos
        self.paren_depth = 0
        self.inside_action()

    def comment(self) -> None:
        self.pos += len(LEFT_COMMENT)
        x = self.src.find(RIGHT_COMMENT, self.pos)
        if x < 0:
            raise self.fail("unclosed comment")
        self.pos = x + len(RIGHT_COMMENT)
        delim, trim = self.at_right_delim()
        if not delim:
            raise self.fail("comment ends before closing delimiter")
        self.pos += (2 if trim else 0) + len(RIGHT_DELIM)
        if trim:
            self.skip_left_trim()
        self.start = self.pos

    def inside_action(self) -> None:
        while True:
            delim, trim = self.at_right_delim()
            if delim:
                if self.paren_depth:
                    raise self.fail("unclosed left paren")
                self.pos += 2 if trim else 0
                self.start = self.pos
                self.pos += len(RIGHT_DELIM)
                self.emit(Tok.RIGHT_DELIM)
                if trim:
                    self.skip_left_trim()
                    self.start = self.pos
                return
            if self.pos >= self.n:
                raise self.fail("unclosed action")
            self.lex_one(self.src[self.pos])

    def lex_one(self, c: str) -> None:
        if c in SPACE_CHARS:
            self.space()
        elif c in _SIMPLE_TOKENS:
            self.pos += 1
            self.emit(_SIMPLE_TOKENS[c])
        elif c == ":":
            self.pos += 1
            if self.peek() != "=":
                raise self.fail("expected :=")
            self.pos += 1
            self.emit(Tok.DECLARE)
        elif c == '"':
            self.quote()
        elif c == "`":
            x = self.src.find("`", self.pos + 1)
            if x < 0:
                raise self.fail("unterminated raw quoted string")
            self.pos = x + 1
            self.emit(Tok.RAW_STRING)
        elif c == "$":
            self.pos += 1
            self.field_or_variable(Tok.VARIABLE)
        elif c == "'":
            self.char_constant()
        elif c == "." and self.pos + 1 < self.n and not "0" <= self.src[self.pos + 1] <= "9":
            self.pos += 1
            self.field_or_variable(Tok.FIELD)
        elif c in "+-." or "0" <= c <= "9":
            self.number()
        elif is_alnum(c):
            self.identifier()
        elif c == "(":
            self.pos += 1
            self.paren_depth += 1
            self.emit(Tok.LEFT_PAREN)
        elif c == ")":
            self.pos += 1
            self.paren_depth -= 1
            self.emit(Tok.RIGHT_PAREN)  # emitted first: the parser may well complain about it before we do
            if self.paren_depth < 0:
                raise self.fail("unexpected right paren")
        elif ord(c) < 0x7F and c.isprintable():
            self.pos += 1
            self.emit(Tok.CHAR)
        else:
            raise self.fail(f"unrecognized character in action: {unicode_repr(c)}")

    def space(self) -> None:
        count = 0
        while self.pos < self.n and self.src[self.pos] in SPACE_CHARS:
            self.pos += 1
            count += 1
        # A trim-marked closing delimiter starts with a space: leave that space for it.
        last = self.pos - 1
        if self.src.startswith("-" + RIGHT_DELIM, last + 1):
            self.pos -= 1
            if count == 1:
                return
        self.emit(Tok.SPACE)

    def quote(self) -> None:
        self.pos += 1
        while True:
            c = self.peek()
            self.pos += 1
            if c == "\\":
                c = self.peek()
                self.pos += 1
                if c not in ("", "\n"):
                    continue
            if c in ("", "\n"):
                raise self.fail("unterminated quoted string")
            if c == '"':
                break
        self.emit(Tok.STRING)

    def char_constant(self) -> None:
        self.pos += 1
        while True:
            c = self.peek()
            self.pos += 1
            if c == "\\":
                c = self.peek()
                self.pos += 1
                if c not in ("", "\n"):
                    continue
            if c in ("", "\n"):
                raise self.fail("unterminated character constant")
            if c == "'":
                break
        self.emit(Tok.CHAR_CONSTANT)

    def field_or_variable(self, kind: str) -> None:
        if self.at_terminator():  # a bare "." or "$"
            self.emit(Tok.DOT if kind is Tok.FIELD else Tok.VARIABLE)
            return
        while self.pos < self.n and is_alnum(self.src[self.pos]):
            self.pos += 1
        if not self.at_terminator():
            raise self.fail(f"bad character {unicode_repr(self.peek())}")
        self.emit(kind)

    def identifier(self) -> None:
        while self.pos < self.n and is_alnum(self.src[self.pos]):
            self.pos += 1
        if not self.at_terminator():
            raise self.fail(f"bad character {unicode_repr(self.peek())}")
        word = self.src[self.start:self.pos]
        if word in KEYWORDS:
            self.emit(KEYWORDS[word])
        elif word in ("true", "false"):
            self.emit(Tok.BOOL)
        else:
            self.emit(Tok.IDENTIFIER)

    def accept(self, chars: str) -> bool:
        if self.pos < self.n and self.src[self.pos] in chars:
            self.pos += 1
            return True
        return False

    def accept_run(self, chars: str) -> None:
        while self.accept(chars):
            pass

    def scan_number(self) -> bool:
        self.accept("+-")
        digits = "0123456789_"
        if self.accept("0"):
            if self.accept("xX"):
                digits = "0123456789abcdefABCDEF_"
            elif self.accept("oO"):
                digits = "01234567_"
            elif self.accept("bB"):
                digits = "01_"
        self.accept_run(digits)
        if self.accept("."):
            self.accept_run(digits)
        if len(digits) == 11 and self.accept("eE"):
            self.accept("+-")
            self.accept_run("0123456789_")
        if len(digits) == 23 and self.accept("pP"):
            self.accept("+-")
            self.accept_run("0123456789_")
        self.accept("i")
        if self.pos < self.n and is_alnum(self.src[self.pos]):
            self.pos += 1
            return False
        return True

    def number(self) -> None:
        if not self.scan_number():
            raise self.fail(f"bad number syntax: {go_quote(self.src[self.start:self.pos])}")
        if self.peek() in ("+", "-"):  # Go's complex literals (1+2i): not supported here
            self.scan_number()
            raise self.fail(f"complex numbers are not supported: {go_quote(self.src[self.start:self.pos])}")
        self.emit(Tok.NUMBER)


def lex(src: str) -> list[Token]:
    """Every token of `src`, ending with EOF, or with ERROR (its message) at the first lexical error."""
    lexer = _Lexer(src)
    try:
        return lexer.run()
    except TemplateError as exc:
        return [*lexer.tokens, Token(Tok.ERROR, exc.message, lexer.start), Token(Tok.EOF, "", len(src))]
