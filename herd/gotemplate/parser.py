"""Go text/template parser: tokens to a tree, following text/template/parse/parse.go.

Checks what Go checks at parse time: undefined variables, unknown functions, {{break}} outside
{{range}}, malformed pipelines. {{define}} and {{block}} bodies become named definitions.
"""

from __future__ import annotations

from collections.abc import Container
from dataclasses import dataclass, field

from herd.gotemplate.errors import DEFAULT_LIMITS, Limits, TemplateError, error_at
from herd.gotemplate.lexer import Tok, Token, go_quote, lex
from herd.gotemplate.literals import char_value, number_value, unquote
from herd.gotemplate.nodes import (
    ActionNode,
    Arg,
    BoolNode,
    BreakNode,
    ChainNode,
    CommandNode,
    ContinueNode,
    DotNode,
    FieldNode,
    IdentifierNode,
    IfNode,
    ListNode,
    NilNode,
    Node,
    NumberNode,
    PipeNode,
    RangeNode,
    StringNode,
    TemplateNode,
    TextNode,
    VariableNode,
    WithNode,
    to_source,
)

_OPERAND_START = frozenset({
    Tok.BOOL, Tok.CHAR_CONSTANT, Tok.DOT, Tok.FIELD, Tok.IDENTIFIER, Tok.NUMBER, Tok.NIL, Tok.RAW_STRING,
    Tok.STRING, Tok.VARIABLE, Tok.LEFT_PAREN,
})
_NOT_EXECUTABLE = (BoolNode, DotNode, NilNode, NumberNode, StringNode)


@dataclass(frozen=True, slots=True)
class _End:
    pos: int


@dataclass(frozen=True, slots=True)
class _Else:
    pos: int


@dataclass
class ParsedTemplate:
    root: ListNode
    definitions: dict[str, ListNode] = field(default_factory=dict)


def _is_empty(tree: ListNode) -> bool:
    return all(isinstance(n, TextNode) and not n.text.strip() for n in tree.nodes)


class _Parser:
    def __init__(self, src: str, tokens: list[Token], funcs: Container[str], limits: Limits) -> None:
        self.src = src
        self.tokens = tokens
        self.count = len(tokens)
        self.i = 0
        self.funcs = funcs
        self.limits = limits
        self.vars: list[str] = ["$"]
        self.range_depth = 0
        self.depth = 0
        self.definitions: dict[str, ListNode] = {}

    # --- token stream -------------------------------------------------------------------
    def next(self) -> Token:
        i = self.i
        self.i = i + 1
        return self.tokens[i] if i < self.count else self.tokens[-1]  # EOF forever once reached

    def backup(self, n: int = 1) -> None:
        self.i -= n

    def peek(self) -> Token:
        return self.tokens[self.i] if self.i < self.count else self.tokens[-1]

    def next_non_space(self) -> Token:
        tokens, i, count = self.tokens, self.i, self.count
        while i < count and tokens[i].kind is Tok.SPACE:
            i += 1
        self.i = i + 1
        return tokens[i] if i < count else tokens[-1]

    def peek_non_space(self) -> Token:
        # Like Go's: the spaces before the token are consumed.
        tok = self.next_non_space()
        self.i -= 1
        return tok

    def fail(self, pos: int, message: str) -> TemplateError:
        return error_at(self.src, pos, message)

    def unexpected(self, tok: Token, context: str) -> TemplateError:
        if tok.kind is Tok.ERROR:
            return self.fail(tok.pos, tok.val)
        return self.fail(tok.pos, f"unexpected {tok.describe()} in {context}")

    def expect(self, kind: str, context: str) -> Token:
        tok = self.next_non_space()
        if tok.kind is not kind:
            raise self.unexpected(tok, context)
        return tok

    def nest(self, pos: int) -> None:
        self.depth += 1
        if self.depth > self.limits.max_depth:
            raise self.fail(pos, f"nesting deeper than {self.limits.max_depth} levels")

    # --- structure ------------------------------------------------------------------------
    def parse(self) -> ParsedTemplate:
        nodes: list[Node] = []
        while self.peek().kind is not Tok.EOF:
            if self.peek().kind is Tok.LEFT_DELIM:
                start = self.i
                self.next()
                if self.next_non_space().kind is Tok.DEFINE:
                    self.definition()
                    continue
                self.i = start
            node = self.text_or_action()
            if isinstance(node, (_End, _Else)):
                raise self.fail(node.pos, f"unexpected {{{{{'end' if isinstance(node, _End) else 'else'}}}}}")
            nodes.append(node)
        return ParsedTemplate(ListNode(tuple(nodes), 0), self.definitions)

    def add_definition(self, name: str, body: ListNode, pos: int) -> None:
        old = self.definitions.get(name)
        if old is not None and not _is_empty(old) and not _is_empty(body):
            raise self.fail(pos, f"template: multiple definition of template {go_quote(name)}")
        if old is None or _is_empty(old):
            self.definitions[name] = body

    def sub_tree(self) -> tuple[ListNode, _End | _Else]:
        """The body of a {{define}} or {{block}}: its own variables, outside any range."""
        saved = self.vars, self.range_depth
        self.vars, self.range_depth = ["$"], 0
        try:
            return self.item_list()
        finally:
            self.vars, self.range_depth = saved

    def definition(self) -> None:
        tok = self.next_non_space()
        name = self.template_name(tok, "define clause")
        self.expect(Tok.RIGHT_DELIM, "define clause")
        body, end = self.sub_tree()
        if not isinstance(end, _End):
            raise self.fail(end.pos, "unexpected {{else}} in define clause")
        self.add_definition(name, body, tok.pos)

    def item_list(self) -> tuple[ListNode, _End | _Else]:
        start = self.peek_non_space().pos
        nodes: list[Node] = []
        while self.peek_non_space().kind is not Tok.EOF:
            node = self.text_or_action()
            if isinstance(node, (_End, _Else)):
                return ListNode(tuple(nodes), start), node
            nodes.append(node)
        raise self.fail(len(self.src), "unexpected EOF")

    def text_or_action(self) -> Node | _End | _Else:
        tok = self.next_non_space()
        if tok.kind is Tok.TEXT:
            return TextNode(tok.val, tok.pos)
        if tok.kind is Tok.LEFT_DELIM:
            return self.action()
        raise self.unexpected(tok, "input")

    def action(self) -> Node | _End | _Else:
        tok = self.next_non_space()
        kind = tok.kind
        if kind is Tok.BLOCK:
            return self.block_control(tok)
        if kind in (Tok.BREAK, Tok.CONTINUE):
            word = tok.val
            self.expect(Tok.RIGHT_DELIM, f"{{{{{word}}}}}")
            if not self.range_depth:
                raise self.fail(tok.pos, f"{{{{{word}}}}} outside {{{{range}}}}")
            return BreakNode(tok.pos) if kind is Tok.BREAK else ContinueNode(tok.pos)
        if kind is Tok.ELSE:
            nxt = self.peek_non_space()
            if nxt.kind in (Tok.IF, Tok.WITH):  # "else if"/"else with": leave the keyword for the caller
                return _Else(nxt.pos)
            return _Else(self.expect(Tok.RIGHT_DELIM, "else").pos)
        if kind is Tok.END:
            return _End(self.expect(Tok.RIGHT_DELIM, "end").pos)
        if kind in (Tok.IF, Tok.RANGE, Tok.WITH):
            return self.control(kind, tok.pos)
        if kind is Tok.TEMPLATE:
            name_tok = self.next_non_space()
            name = self.template_name(name_tok, "template clause")
            pipe = None
            if self.next_non_space().kind is not Tok.RIGHT_DELIM:
                self.backup()
                pipe = self.pipeline("template clause", Tok.RIGHT_DELIM)
            return TemplateNode(name, pipe, tok.pos)
        self.backup()
        pos = self.peek().pos
        return ActionNode(self.pipeline("command", Tok.RIGHT_DELIM), pos)

    def template_name(self, tok: Token, context: str) -> str:
        if tok.kind not in (Tok.STRING, Tok.RAW_STRING):
            raise self.unexpected(tok, context)
        return self.unquote(tok)

    def block_control(self, tok: Token) -> TemplateNode:
        name_tok = self.next_non_space()
        name = self.template_name(name_tok, "block clause")
        pipe = self.pipeline("block clause", Tok.RIGHT_DELIM)
        body, end = self.sub_tree()
        if not isinstance(end, _End):
            raise self.fail(end.pos, "unexpected {{else}} in block clause")
        self.add_definition(name, body, name_tok.pos)
        return TemplateNode(name, pipe, tok.pos)

    def control(self, kind: str, pos: int) -> Node:
        context = kind
        self.nest(pos)
        saved_vars = len(self.vars)
        try:
            pipe = self.pipeline(context, Tok.RIGHT_DELIM)
            if kind is Tok.RANGE:
                self.range_depth += 1
            body, nxt = self.item_list()
            if kind is Tok.RANGE:
                self.range_depth -= 1
            else_list = None
            if isinstance(nxt, _Else):
                chained = self.peek().kind
                if kind in (Tok.IF, Tok.WITH) and chained is kind:
                    # {{if a}}x{{else if b}}y{{end}} is {{if a}}x{{else}}{{if b}}y{{end}}{{end}}.
                    inner_tok = self.next()
                    else_list = ListNode((self.control(kind, inner_tok.pos),), nxt.pos)
                else:
                    else_list, end = self.item_list()
                    if not isinstance(end, _End):
                        raise self.fail(end.pos, "expected end; found {{else}}")
        finally:
            del self.vars[saved_vars:]
            self.depth -= 1
        if kind is Tok.IF:
            return IfNode(pipe, body, else_list, pos)
        if kind is Tok.RANGE:
            return RangeNode(pipe, body, else_list, pos)
        return WithNode(pipe, body, else_list, pos)

    # --- pipelines ----------------------------------------------------------------------
    def pipeline(self, context: str, end: str) -> PipeNode:
        pos = self.peek_non_space().pos
        decl: list[VariableNode] = []
        is_assign = False
        while self.peek_non_space().kind is Tok.VARIABLE:
            start = self.i
            var = self.next_non_space()
            nxt = self.next_non_space()
            if nxt.kind in (Tok.ASSIGN, Tok.DECLARE):
                is_assign = nxt.kind is Tok.ASSIGN
                decl.append(VariableNode((var.val,), var.pos))
                self.vars.append(var.val)
                break
            if nxt.kind is Tok.CHAR and nxt.val == ",":
                decl.append(VariableNode((var.val,), var.pos))
                self.vars.append(var.val)
                if context == "range" and len(decl) < 2:
                    if self.peek_non_space().kind in (Tok.VARIABLE, Tok.RIGHT_DELIM, Tok.RIGHT_PAREN):
                        continue
                    raise self.fail(nxt.pos, "range can only initialize variables")
                raise self.fail(nxt.pos, f"too many declarations in {context}")
            self.i = start  # an ordinary operand: `$x foo`
            break
        cmds: list[CommandNode] = []
        while True:
            tok = self.next_non_space()
            if tok.kind is end:
                if not cmds:
                    raise self.fail(tok.pos, f"missing value for {context}")
                for stage, cmd in enumerate(cmds[1:], start=2):
                    if isinstance(cmd.args[0], _NOT_EXECUTABLE):
                        raise self.fail(cmd.pos, f"non executable command in pipeline stage {stage}")
                return PipeNode(tuple(decl), is_assign, tuple(cmds), pos)
            if tok.kind not in _OPERAND_START:
                raise self.unexpected(tok, context)
            self.backup()
            cmds.append(self.command())

    def command(self) -> CommandNode:
        pos = self.peek_non_space().pos
        args: list[Arg] = []
        while True:
            self.peek_non_space()
            operand = self.operand()
            if operand is not None:
                args.append(operand)
            tok = self.next()
            if tok.kind is Tok.SPACE:
                continue
            if tok.kind in (Tok.RIGHT_DELIM, Tok.RIGHT_PAREN):
                self.backup()
            elif tok.kind is not Tok.PIPE:
                raise self.unexpected(tok, "operand")
            break
        if not args:
            raise self.fail(pos, "empty command")
        return CommandNode(tuple(args), pos)

    def operand(self) -> Arg | None:
        node = self.term()
        if node is None or self.peek().kind is not Tok.FIELD:
            return node
        fields: list[str] = []
        while self.peek().kind is Tok.FIELD:
            fields.append(self.next().val[1:])
        if isinstance(node, FieldNode):
            return FieldNode(node.ident + tuple(fields), node.pos)
        if isinstance(node, VariableNode):
            return VariableNode(node.ident + tuple(fields), node.pos)
        if isinstance(node, (BoolNode, StringNode, NumberNode, NilNode, DotNode)):
            raise self.fail(node.pos, f"unexpected . after term {go_quote(to_source(node))}")
        return ChainNode(node, tuple(fields), node.pos)

    def term(self) -> Arg | None:
        tok = self.next_non_space()
        kind = tok.kind
        if kind is Tok.IDENTIFIER:
            if tok.val not in self.funcs:
                raise self.fail(tok.pos, f"function {go_quote(tok.val)} not defined")
            return IdentifierNode(tok.val, tok.pos)
        if kind is Tok.DOT:
            return DotNode(tok.pos)
        if kind is Tok.NIL:
            return NilNode(tok.pos)
        if kind is Tok.VARIABLE:
            if tok.val not in self.vars:
                raise self.fail(tok.pos, f"undefined variable {go_quote(tok.val)}")
            return VariableNode((tok.val,), tok.pos)
        if kind is Tok.FIELD:
            return FieldNode((tok.val[1:],), tok.pos)
        if kind is Tok.BOOL:
            return BoolNode(tok.val == "true", tok.pos)
        if kind in (Tok.NUMBER, Tok.CHAR_CONSTANT):
            try:
                value = char_value(tok.val) if kind is Tok.CHAR_CONSTANT else number_value(tok.val)
            except ValueError as exc:
                raise self.fail(tok.pos, str(exc)) from None
            return NumberNode(value, tok.val, tok.pos)
        if kind is Tok.LEFT_PAREN:
            self.nest(tok.pos)
            try:
                return self.pipeline("parenthesized pipeline", Tok.RIGHT_PAREN)
            finally:
                self.depth -= 1
        if kind in (Tok.STRING, Tok.RAW_STRING):
            return StringNode(self.unquote(tok), tok.val, tok.pos)
        self.backup()
        return None

    def unquote(self, tok: Token) -> str:
        try:
            return unquote(tok.val)
        except ValueError:
            raise self.fail(tok.pos, f"invalid syntax: {tok.val}") from None


def parse_tree(source: str, funcs: Container[str], limits: Limits = DEFAULT_LIMITS) -> ParsedTemplate:
    """Parse `source`; `funcs` are the function names a template may call."""
    if len(source.encode("utf-8", "surrogatepass")) > limits.max_source_bytes:
        raise TemplateError(f"template is larger than {limits.max_source_bytes} bytes")
    return _Parser(source, lex(source), funcs, limits).parse()
