"""Executing a parse tree against data, following text/template's exec.go.

Never runs Python from the template: fields only read dict keys and GoStruct fields, and only the
functions in the function table can be called. Every render is bounded by Limits.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from herd.gotemplate import gofmt
from herd.gotemplate.errors import DEFAULT_LIMITS, Limits, TemplateError, position
from herd.gotemplate.funcs import ArgType, CallError, Func
from herd.gotemplate.lexer import go_quote
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
from herd.gotemplate.values import MISSING, GoStruct, as_items, sorted_items, truth, type_name

MissingKey = Literal["invalid", "zero"]  # Go's Option("missingkey=default") and ("missingkey=zero")
_NO_FINAL = object()  # no value piped in from a previous command


class _Break(Exception):
    pass


class _Continue(Exception):
    pass


class _State:
    def __init__(self, source: str, definitions: Mapping[str, ListNode], funcs: Mapping[str, Func],
                 missing_key: MissingKey, limits: Limits) -> None:
        self.source = source
        self.definitions = definitions
        self.funcs = funcs
        self.missing_zero = missing_key == "zero"
        self.limits = limits
        self.out: list[str] = []
        self.size = 0
        self.steps = 0
        self.iterations = 0
        self.depth = 0
        self.vars: list[list[Any]] = []  # [name, value] pairs, innermost last
        self.node: Any = None  # what is being evaluated, for error positions

    # --- errors, output, bounds -------------------------------------------------------------
    def error(self, message: str) -> TemplateError:
        node = self.node
        if node is None:
            return TemplateError(message)
        line, column = position(self.source, node.pos)
        if isinstance(node, (CommandNode, PipeNode, FieldNode, VariableNode, ChainNode, IdentifierNode, DotNode,
                             NilNode, BoolNode, NumberNode, StringNode)):
            message = f"executing at <{to_source(node)}>: {message}"
        return TemplateError(message, line=line, column=column)

    def at(self, node: Any) -> None:
        self.node = node
        self.steps += 1
        if self.steps > self.limits.max_steps:
            raise self.error(f"template takes more than {self.limits.max_steps} steps")

    def write(self, text: str) -> None:
        self.size += len(text)
        if self.size > self.limits.max_output_chars:
            raise self.error(f"output is longer than {self.limits.max_output_chars} characters")
        self.out.append(text)

    # --- variables ----------------------------------------------------------------------------
    def var_value(self, name: str) -> Any:
        for entry in reversed(self.vars):
            if entry[0] == name:
                return entry[1]
        raise self.error(f"undefined variable: {name}")

    def set_var(self, name: str, value: Any) -> None:
        for entry in reversed(self.vars):
            if entry[0] == name:
                entry[1] = value
                return
        raise self.error(f"undefined variable: {name}")

    # --- walking ----------------------------------------------------------------------------
    def walk(self, dot: Any, node: Node) -> None:
        self.at(node)
        if isinstance(node, TextNode):
            self.write(node.text)
        elif isinstance(node, ActionNode):
            value = self.eval_pipeline(dot, node.pipe)
            if not node.pipe.decl:  # a declaration prints nothing
                self.write("<no value>" if value is MISSING else gofmt.value_string(value, deref=True))
        elif isinstance(node, ListNode):
            for child in node.nodes:
                self.walk(dot, child)
        elif isinstance(node, (IfNode, WithNode)):
            mark = len(self.vars)
            value = self.eval_pipeline(dot, node.pipe)
            if truth(value):
                self.walk(value if isinstance(node, WithNode) else dot, node.list)
            elif node.else_list is not None:
                self.walk(dot, node.else_list)
            del self.vars[mark:]
        elif isinstance(node, RangeNode):
            self.walk_range(dot, node)
        elif isinstance(node, BreakNode):
            raise _Break
        elif isinstance(node, ContinueNode):
            raise _Continue
        else:
            self.walk_template(dot, node)

    def walk_range(self, dot: Any, node: RangeNode) -> None:
        mark = len(self.vars)
        value = self.eval_pipeline(dot, node.pipe)
        body_mark = len(self.vars)
        decl, assign = node.pipe.decl, node.pipe.is_assign
        if isinstance(value, dict):
            pairs: list[tuple[Any, Any]] = sorted_items(value)
        elif (items := as_items(value)) is not None:
            pairs = list(enumerate(items))
        elif isinstance(value, int) and not isinstance(value, bool):  # Go 1.22: range over an integer
            if len(decl) > 1:
                raise self.error(f"can't use {value} to iterate over more than one variable")
            if value > self.limits.max_range_iterations:
                raise self.error(f"more than {self.limits.max_range_iterations} range iterations")
            pairs = [(i, i) for i in range(max(value, 0))]
        elif value is MISSING or value is None:
            pairs = []
        else:
            raise self.error(f"range can't iterate over {gofmt.value_string(value)}")
        try:
            for index, elem in pairs:
                self.iterations += 1
                if self.iterations > self.limits.max_range_iterations:
                    raise self.error(f"more than {self.limits.max_range_iterations} range iterations")
                if decl:
                    if assign:
                        self.set_var(decl[0].ident[0], index if len(decl) > 1 else elem)
                    else:
                        self.vars[-1][1] = elem
                if len(decl) > 1:
                    if assign:
                        self.set_var(decl[1].ident[0], elem)
                    else:
                        self.vars[-2][1] = index
                try:
                    self.walk(elem, node.list)
                except _Continue:
                    pass
                finally:
                    del self.vars[body_mark:]
        except _Break:
            pass
        if not pairs and node.else_list is not None:
            self.walk(dot, node.else_list)
        del self.vars[mark:]

    def walk_template(self, dot: Any, node: TemplateNode) -> None:
        body = self.definitions.get(node.name)
        if body is None:
            raise self.error(f"template {go_quote(node.name)} not defined")
        if self.depth >= self.limits.max_depth:
            raise self.error(f"exceeded maximum template depth ({self.limits.max_depth})")
        new_dot = self.eval_pipeline(dot, node.pipe) if node.pipe is not None else MISSING
        saved = self.vars
        self.vars = [["$", new_dot]]  # no dynamic scoping: a called template sees only $
        self.depth += 1
        try:
            self.walk(new_dot, body)
        finally:
            self.depth -= 1
            self.vars = saved

    # --- evaluation ---------------------------------------------------------------------------
    def eval_pipeline(self, dot: Any, pipe: PipeNode) -> Any:
        self.at(pipe)
        value: Any = _NO_FINAL
        for cmd in pipe.cmds:
            value = self.eval_command(dot, cmd, value)
            if value is None:  # Go digs into an interface{}: a nil one becomes "no value"
                value = MISSING
        for var in pipe.decl:
            if pipe.is_assign:
                self.set_var(var.ident[0], value)
            else:
                self.vars.append([var.ident[0], value])
        return value

    def eval_command(self, dot: Any, cmd: CommandNode, final: Any) -> Any:
        first = cmd.args[0]
        self.at(first)
        if isinstance(first, FieldNode):
            return self.eval_field_chain(dot, dot, first.ident, cmd.args, final)
        if isinstance(first, ChainNode):
            return self.eval_chain(dot, first, cmd.args, final)
        if isinstance(first, IdentifierNode):
            return self.eval_function(dot, first, cmd, cmd.args, final)
        if isinstance(first, VariableNode):
            return self.eval_variable(first, cmd.args, final)
        self.not_a_function(cmd.args, final)
        if isinstance(first, PipeNode):
            return self.eval_pipeline(dot, first)
        if isinstance(first, NilNode):
            raise self.error("nil is not a command")
        return self.literal(dot, first)

    def literal(self, dot: Any, node: Arg) -> Any:
        if isinstance(node, DotNode):
            return dot
        if isinstance(node, NumberNode) and isinstance(node.value, int) and node.value >= 1 << 63:
            raise self.error(f"{node.text} overflows int")
        if isinstance(node, (BoolNode, NumberNode, StringNode)):
            return node.value
        raise self.error(f"can't evaluate command {to_source(node)}")

    def not_a_function(self, args: tuple[Arg, ...], final: Any) -> None:
        if len(args) > 1 or final is not _NO_FINAL:
            raise self.error(f"can't give argument to non-function {to_source(args[0])}")

    def eval_variable(self, node: VariableNode, args: tuple[Arg, ...], final: Any) -> Any:
        value = self.var_value(node.ident[0])
        if len(node.ident) == 1:
            self.not_a_function(args, final)
            return value
        return self.eval_field_chain(None, value, node.ident[1:], args, final)

    def eval_chain(self, dot: Any, node: ChainNode, args: tuple[Arg, ...], final: Any) -> Any:
        if isinstance(node.node, NilNode):
            raise self.error(f"indirection through explicit nil in {to_source(node)}")
        receiver = self.eval_arg(dot, node.node)
        return self.eval_field_chain(dot, MISSING if receiver is None else receiver, node.fields, args, final)

    def eval_field_chain(self, dot: Any, receiver: Any, ident: tuple[str, ...], args: tuple[Arg, ...],
                         final: Any) -> Any:
        for name in ident[:-1]:
            receiver = self.eval_field(name, receiver, False)
        return self.eval_field(ident[-1], receiver, len(args) > 1 or final is not _NO_FINAL)

    def eval_field(self, name: str, receiver: Any, has_args: bool) -> Any:
        if receiver is MISSING:
            return MISSING
        if receiver is None:
            raise self.error(f"nil pointer evaluating interface {{}}.{name}")
        if isinstance(receiver, GoStruct):
            if name in receiver.fields:
                if has_args:
                    raise self.error(f"{name} has arguments but cannot be invoked as function")
                return receiver.fields[name]
        elif isinstance(receiver, dict):
            if has_args:
                raise self.error(f"{name} is not a method but has arguments")
            if name in receiver:
                return receiver[name]
            return None if self.missing_zero else MISSING
        raise self.error(f"can't evaluate field {name} in type {type_name(receiver)}")

    def eval_function(self, dot: Any, node: IdentifierNode, cmd: CommandNode | IdentifierNode,
                      args: tuple[Arg, ...], final: Any) -> Any:
        self.at(node)
        name = node.name
        fn = self.funcs.get(name)
        if fn is None:
            raise self.error(f"{go_quote(name)} is not a defined function")
        operands = args[1:]
        count = len(operands) + (final is not _NO_FINAL)
        if fn.variadic is None and count != len(fn.params):
            raise self.error(f"wrong number of args for {name}: want {len(fn.params)} got {count}")
        if count < len(fn.params):
            raise self.error(f"wrong number of args for {name}: want at least {len(fn.params)} got {count}")
        if name in ("and", "or"):  # short-circuit: stop at the first false (and) or true (or) operand
            value: Any = MISSING
            for operand in operands:
                value = self.eval_arg(dot, operand)
                if truth(value) == (name == "or"):
                    return value
            return final if final is not _NO_FINAL else value
        values = []
        for i, operand in enumerate(operands):
            values.append(self.typed(self.eval_arg(dot, operand), self.param_type(fn, i), operand))
        if final is not _NO_FINAL:
            values.append(self.typed(final, self.param_type(fn, len(operands)), None))
        try:
            result = fn.call(values)
        except CallError as exc:
            self.at(cmd)
            raise self.error(f"error calling {name}: {exc}") from None
        if isinstance(result, str) and len(result) > self.limits.max_output_chars:
            raise self.error(f"{name} built a string longer than {self.limits.max_output_chars} characters")
        return result

    @staticmethod
    def param_type(fn: Func, i: int) -> ArgType:
        return fn.params[i] if i < len(fn.params) else fn.variadic or "any"

    def typed(self, value: Any, kind: ArgType, node: Arg | None) -> Any:
        if value is MISSING:
            value = None  # an invalid value passes as nil
        if kind == "string" and not isinstance(value, str):
            if node is not None and isinstance(node, (BoolNode, NumberNode, NilNode)):
                raise self.error(f"expected string; found {to_source(node)}")
            raise self.error(f"wrong type for value; expected string; got {type_name(value)}")
        return value

    def eval_arg(self, dot: Any, node: Arg) -> Any:
        self.at(node)
        if isinstance(node, FieldNode):
            return self.eval_field_chain(dot, dot, node.ident, (node,), _NO_FINAL)
        if isinstance(node, VariableNode):
            return self.eval_variable(node, (node,), _NO_FINAL)
        if isinstance(node, PipeNode):
            return self.eval_pipeline(dot, node)
        if isinstance(node, IdentifierNode):
            return self.eval_function(dot, node, node, (node,), _NO_FINAL)
        if isinstance(node, ChainNode):
            return self.eval_chain(dot, node, (node,), _NO_FINAL)
        if isinstance(node, NilNode):
            return None
        return self.literal(dot, node)


def execute(source: str, root: ListNode, data: Any, *, definitions: Mapping[str, ListNode],
            funcs: Mapping[str, Func], missing_key: MissingKey = "invalid", limits: Limits = DEFAULT_LIMITS) -> str:
    """Run a parsed template (`source` gives error positions) and return what it writes."""
    state = _State(source, definitions, funcs, missing_key, limits)
    state.vars.append(["$", data])
    try:
        state.walk(data, root)
    except RecursionError:
        raise TemplateError("template nests too deeply to render") from None
    return "".join(state.out)
