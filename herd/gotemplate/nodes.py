"""The parse tree of a Go template, shaped like text/template/parse's nodes (immutable here)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Union


@dataclass(frozen=True, slots=True)
class TextNode:
    text: str
    pos: int


@dataclass(frozen=True, slots=True)
class FieldNode:
    ident: tuple[str, ...]  # .A.B → ("A", "B")
    pos: int


@dataclass(frozen=True, slots=True)
class VariableNode:
    ident: tuple[str, ...]  # $x.A → ("$x", "A")
    pos: int


@dataclass(frozen=True, slots=True)
class ChainNode:
    node: Arg  # (pipeline).A.B: a term followed by fields
    fields: tuple[str, ...]
    pos: int


@dataclass(frozen=True, slots=True)
class IdentifierNode:
    name: str  # a function name
    pos: int


@dataclass(frozen=True, slots=True)
class DotNode:
    pos: int


@dataclass(frozen=True, slots=True)
class NilNode:
    pos: int


@dataclass(frozen=True, slots=True)
class BoolNode:
    value: bool
    pos: int


@dataclass(frozen=True, slots=True)
class NumberNode:
    value: int | float
    text: str
    pos: int


@dataclass(frozen=True, slots=True)
class StringNode:
    value: str
    quoted: str  # as written, for messages
    pos: int


@dataclass(frozen=True, slots=True)
class CommandNode:
    args: tuple[Arg, ...]
    pos: int


@dataclass(frozen=True, slots=True)
class PipeNode:
    decl: tuple[VariableNode, ...]
    is_assign: bool  # `$x = ...` rather than `$x := ...`
    cmds: tuple[CommandNode, ...]
    pos: int


@dataclass(frozen=True, slots=True)
class ListNode:
    nodes: tuple[Node, ...]
    pos: int


@dataclass(frozen=True, slots=True)
class ActionNode:
    pipe: PipeNode
    pos: int


@dataclass(frozen=True, slots=True)
class IfNode:
    pipe: PipeNode
    list: ListNode
    else_list: ListNode | None
    pos: int


@dataclass(frozen=True, slots=True)
class RangeNode:
    pipe: PipeNode
    list: ListNode
    else_list: ListNode | None
    pos: int


@dataclass(frozen=True, slots=True)
class WithNode:
    pipe: PipeNode
    list: ListNode
    else_list: ListNode | None
    pos: int


@dataclass(frozen=True, slots=True)
class BreakNode:
    pos: int


@dataclass(frozen=True, slots=True)
class ContinueNode:
    pos: int


@dataclass(frozen=True, slots=True)
class TemplateNode:
    name: str
    pipe: PipeNode | None
    pos: int


Arg = Union[  # noqa: UP007 - a runtime alias used before its members are defined
    FieldNode, VariableNode, ChainNode, IdentifierNode, DotNode, NilNode, BoolNode, NumberNode, StringNode, PipeNode
]
Node = Union[  # noqa: UP007
    TextNode, ActionNode, IfNode, RangeNode, WithNode, ListNode, BreakNode, ContinueNode, TemplateNode
]
BranchNode = Union[IfNode, RangeNode, WithNode]  # noqa: UP007


def to_source(node: Arg | CommandNode) -> str:
    """Go's Node.String() for the operands named in error messages."""
    if isinstance(node, FieldNode):
        return "." + ".".join(node.ident)
    if isinstance(node, VariableNode):
        return ".".join(node.ident)
    if isinstance(node, ChainNode):
        inner = to_source(node.node)
        if isinstance(node.node, PipeNode):
            inner = f"({inner})"
        return inner + "".join("." + f for f in node.fields)
    if isinstance(node, IdentifierNode):
        return node.name
    if isinstance(node, DotNode):
        return "."
    if isinstance(node, NilNode):
        return "nil"
    if isinstance(node, BoolNode):
        return "true" if node.value else "false"
    if isinstance(node, NumberNode):
        return node.text
    if isinstance(node, StringNode):
        return node.quoted
    if isinstance(node, CommandNode):
        return " ".join(f"({to_source(a)})" if isinstance(a, PipeNode) else to_source(a) for a in node.args)
    decl = ", ".join(to_source(v) for v in node.decl)
    cmds = " | ".join(to_source(c) for c in node.cmds)
    return f"{decl} {'=' if node.is_assign else ':='} {cmds}" if decl else cmds
