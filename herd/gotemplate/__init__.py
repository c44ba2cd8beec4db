"""Go text/template, as Ollama's Modelfile TEMPLATEs use it: parse once, render many times.

    tmpl = parse("{{ range .Messages }}{{ .Role }}: {{ .Content }}\\n{{ end }}")
    tmpl.render({"Messages": [{"Role": "user", "Content": "Hi"}]})

Rendering is byte-for-byte Go's, including trim markers, `<no value>` for missing map keys,
fmt's %v for printed values and encoding/json for `json`. Templates are untrusted input: they
only read data and call the functions in the table, and every parse and render is bounded.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from herd.gotemplate.errors import DEFAULT_LIMITS, Limits, TemplateError
from herd.gotemplate.funcs import GO_BUILTINS, OLLAMA_FUNCS, Func
from herd.gotemplate.nodes import ListNode
from herd.gotemplate.parser import parse_tree
from herd.gotemplate.render import MissingKey, execute
from herd.gotemplate.values import MISSING, GoMap, GoSlice, GoStruct

__all__ = [
    "DEFAULT_LIMITS",
    "GO_BUILTINS",
    "MISSING",
    "OLLAMA_FUNCS",
    "Func",
    "GoMap",
    "GoSlice",
    "GoStruct",
    "Limits",
    "Template",
    "TemplateError",
    "parse",
]


@dataclass(frozen=True)
class Template:
    """A parsed template: the main tree and the {{define}}/{{block}} definitions it declared."""

    source: str
    root: ListNode
    definitions: Mapping[str, ListNode] = field(default_factory=dict)
    funcs: Mapping[str, Func] = field(default_factory=lambda: OLLAMA_FUNCS)
    limits: Limits = DEFAULT_LIMITS

    def render(self, data: Any, *, missing_key: MissingKey = "invalid") -> str:
        """Execute with `data` as dot. missing_key="zero" is Go's Option("missingkey=zero")."""
        return execute(self.source, self.root, data, definitions=self.definitions, funcs=self.funcs,
                       missing_key=missing_key, limits=self.limits)


def parse(source: str, *, funcs: Mapping[str, Func] = OLLAMA_FUNCS, limits: Limits = DEFAULT_LIMITS) -> Template:
    """Parse Go template text; raises TemplateError (with line and column) when it is not valid."""
    tree = parse_tree(source, funcs, limits)
    return Template(source, tree.root, tree.definitions, funcs, limits)
