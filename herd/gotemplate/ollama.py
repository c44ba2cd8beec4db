"""Ollama's rewrites of a parsed template (template/template.go), reproduced node for node.

- `variables`: Template.Vars(), the lower-cased field and variable names, which decide between
  the `.Messages` rendering and the legacy per-turn one.
- `with_response`: Parse appends `{{ .Response }}` to templates that mention neither.
- `cut_after_response`: deleteNode, which drops everything after the first `.Response` field for
  the last legacy turn, with all of its quirks (it does not look inside if/range/with pipelines).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from herd.gotemplate import Template, TemplateError
from herd.gotemplate.nodes import (
    ActionNode,
    CommandNode,
    FieldNode,
    IfNode,
    ListNode,
    PipeNode,
    RangeNode,
    TemplateNode,
    VariableNode,
    WithNode,
)

RESPONSE = ActionNode(PipeNode((), False, (CommandNode((FieldNode(("Response",), 0),), 0),), 0), 0)


def _identifiers(node: object) -> list[str]:
    if isinstance(node, ListNode):
        return [name for child in node.nodes for name in _identifiers(child)]
    if isinstance(node, TemplateNode):
        if node.pipe is None:
            raise TemplateError("undefined template specified")  # Ollama refuses {{template "x"}} with no pipeline
        return _identifiers(node.pipe)
    if isinstance(node, ActionNode):
        return _identifiers(node.pipe)
    if isinstance(node, (IfNode, RangeNode, WithNode)):
        names = _identifiers(node.pipe) + _identifiers(node.list)
        return names + (_identifiers(node.else_list) if node.else_list is not None else [])
    if isinstance(node, PipeNode):
        return [name for cmd in node.cmds for arg in cmd.args for name in _identifiers(arg)]
    if isinstance(node, (FieldNode, VariableNode)):
        return list(node.ident)
    return []


def variables(tmpl: Template) -> list[str]:
    """Template.Vars(): every field and variable name in the template and its definitions, lower-cased."""
    names: set[str] = set()
    for tree in (tmpl.root, *tmpl.definitions.values()):
        names.update(n.lower() for n in _identifiers(tree))
    return sorted(names)


def with_response(tmpl: Template) -> Template:
    """What Ollama's Parse does: a template that uses neither .Messages nor .Response gets {{ .Response }}."""
    names = variables(tmpl)
    if "messages" in names or "response" in names:
        return tmpl
    return replace(tmpl, root=ListNode((*tmpl.root.nodes, RESPONSE), tmpl.root.pos))


class _Cutter:
    def __init__(self) -> None:
        self.cut = False

    def deleted(self, node: object) -> bool:
        if isinstance(node, FieldNode) and "Response" in node.ident:
            self.cut = True
            return False
        return self.cut

    def walk(self, node: Any) -> Any:
        if self.deleted(node):
            return None
        if isinstance(node, ListNode):
            kept = [w for child in node.nodes if (w := self.walk(child)) is not None]
            return ListNode(tuple(kept), node.pos)
        if isinstance(node, (IfNode, RangeNode, WithNode)):
            body = self.walk(node.list)
            else_list = node.else_list
            if else_list is not None:
                else_list = self.walk(else_list)
                if else_list is None:
                    # Go asserts a nil interface to *ListNode here and panics; Ollama answers 500.
                    raise TemplateError("cannot render the last turn: .Response is followed by an {{else}}")
            return replace(node, list=body, else_list=else_list)
        if isinstance(node, ActionNode):
            pipe = self.walk(node.pipe)
            return None if pipe is None else replace(node, pipe=pipe)
        if isinstance(node, PipeNode):
            cmds = []
            for cmd in node.cmds:
                args = [w for arg in cmd.args if (w := self.walk(arg)) is not None]
                if not args:
                    return None  # one emptied command drops the whole pipeline
                cmds.append(replace(cmd, args=tuple(args)))
            return replace(node, cmds=tuple(cmds)) if cmds else None
        return node


def cut_after_response(root: ListNode) -> ListNode:
    """deleteNode(root, after the first .Response field): the tree Ollama renders for the last legacy turn."""
    cut = _Cutter().walk(root)
    assert isinstance(cut, ListNode)  # the root itself is visited before anything can be cut
    return cut

