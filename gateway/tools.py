"""Tools in a request, for both dialects: the checked tool list, what `tool_choice` asks, the
schema that forces a call, and the tool turns of a conversation as templates expect them.

tool_choice semantics (OpenAI's; Ollama has no such field, Herd accepts OpenAI's there too):
- `auto` (the default with tools): the template offers the tools; calls are parsed from the text.
- `none`: the tools are not offered to the template and nothing is parsed, so the answer is text.
- `required`: exactly one call of any offered tool, forced by a grammar (`Job.format`), so its
  arguments always validate against that tool's parameters.
- a named function (`{"type": "function", "function": {"name"}}`, or the Responses API's
  `{"type": "function", "name"}`): exactly one call of that tool, forced the same way.
- `allowed_tools` (`{"mode": "auto"|"required", "tools": [...]}`): as `mode`, over those tools.
"""

from __future__ import annotations

import copy
import json
import re
from dataclasses import dataclass, field
from typing import Any, Literal

from gateway.errors import ApiError, bad_request
from gateway.tool_calls import PlainText, TextSplitter, ToolCallParser
from herd.protocol import OutputFormat

Mode = Literal["none", "auto", "required", "function"]
_NAME = re.compile(r"^[\w.:-]{1,128}$")
_EMPTY_PARAMETERS: dict[str, Any] = {"type": "object", "properties": {}}


@dataclass(frozen=True)
class FunctionTool:
    name: str
    parameters: dict[str, Any]  # a JSON schema of type object
    spec: dict[str, Any]  # the function as the client sent it: what templates are given

    def for_template(self) -> dict[str, Any]:
        """The shape both Ollama's `.Tools` and Hugging Face templates' `tools` expect."""
        return {"type": "function", "function": self.spec}


def read_tools(raw: list[dict[str, Any]] | None, *, flat: bool = False, param: str = "tools") -> list[FunctionTool]:
    """Checked function tools. `flat` is the Responses API's `{"type", "name", "parameters"}`;
    otherwise `{"type": "function", "function": {...}}` (chat completions and Ollama)."""
    tools: list[FunctionTool] = []
    for i, tool in enumerate(raw or []):
        where = f"{param}[{i}]"
        if not isinstance(tool, dict):
            raise bad_request(f"'{where}' must be an object", param=where)
        kind = tool.get("type", "function")
        if kind != "function":
            raise bad_request(f"'{where}.type': only function tools are supported, not {kind!r}",
                              param=f"{where}.type")
        function = tool if flat else tool.get("function")
        at = where if flat else f"{where}.function"
        if not isinstance(function, dict):
            raise bad_request(f"'{at}' is required: an object with the function's name and parameters", param=at)
        name = function.get("name")
        if not isinstance(name, str) or not _NAME.match(name):
            raise bad_request(f"'{at}.name' must be a function name (letters, digits, '_', '-', '.', ':'; "
                              f"at most 128): got {name!r}", param=f"{at}.name")
        if any(t.name == name for t in tools):
            raise bad_request(f"'{at}.name': the function '{name}' is defined twice", param=f"{at}.name")
        parameters = function.get("parameters")
        if parameters is None:
            parameters = _EMPTY_PARAMETERS
        elif not _object_schema(parameters):
            raise bad_request(f"'{at}.parameters' must be a JSON schema of type 'object'", param=f"{at}.parameters")
        spec = {k: v for k, v in function.items() if k != "type"} if flat else function
        tools.append(FunctionTool(name, parameters, spec))
    return tools


def _object_schema(schema: Any) -> bool:
    return (isinstance(schema, dict) and schema.get("type", "object") == "object"
            and isinstance(schema.get("properties", {}), dict) and isinstance(schema.get("required", []), list))


@dataclass(frozen=True)
class ToolPlan:
    """What the request asks of tools: which are offered, and whether a call is optional or forced."""

    tools: list[FunctionTool] = field(default_factory=list)
    mode: Mode = "none"
    allowed: tuple[str, ...] = ()  # the tools a call may name
    parallel: bool = True

    @property
    def forced(self) -> bool:
        return self.mode in ("required", "function")

    def offered(self) -> list[dict[str, Any]] | None:
        """The tools for the template; None (no tools at all) when none may be called."""
        if self.mode == "none" or not self.tools:
            return None
        return [t.for_template() for t in self.tools]

    def output_format(self) -> OutputFormat | None:
        """A forced call is grammar-constrained: the answer is one JSON call of an allowed tool."""
        if not self.forced:
            return None
        return OutputFormat(json_schema=call_schema([t for t in self.tools if t.name in self.allowed]))

    def splitter(self, tag: str) -> TextSplitter:
        """How the answer's text is read: plain text, or content and calls."""
        if self.mode == "none" or not self.tools:
            return PlainText()
        # A forced answer is the call's JSON itself (the grammar allows nothing else).
        return ToolCallParser(self.allowed, "{" if self.forced else tag, max_calls=None if self.parallel else 1)


def read_plan(tools: list[FunctionTool], choice: str | dict[str, Any] | None, *,
              parallel: bool | None = None, param: str = "tool_choice") -> ToolPlan:
    """The ToolPlan for checked tools and a `tool_choice` (a 400 naming `param` if it is wrong)."""
    parallel = parallel is not False
    if choice is None:
        return ToolPlan(tools, "auto" if tools else "none", tuple(t.name for t in tools), parallel)
    if not tools:
        raise bad_request(f"'{param}' is only allowed when 'tools' are specified", param=param)
    names = tuple(t.name for t in tools)
    if isinstance(choice, str):
        if choice not in ("none", "auto", "required"):
            raise bad_request(f"'{param}' must be 'none', 'auto', 'required' or a function, not {choice!r}",
                              param=param)
        return ToolPlan(tools, choice, names, parallel)  # type: ignore[arg-type]
    kind = choice.get("type")
    if kind == "function":
        function = choice.get("function")
        name = function.get("name") if isinstance(function, dict) else choice.get("name")
        _known(name, names, f"{param}.function.name" if isinstance(function, dict) else f"{param}.name")
        return ToolPlan(tools, "function", (str(name),), parallel)
    if kind == "allowed_tools":
        inner = choice.get("allowed_tools", choice)  # chat nests it; the Responses API does not
        mode, listed = (inner.get("mode"), inner.get("tools")) if isinstance(inner, dict) else (None, None)
        if mode not in ("auto", "required") or not isinstance(listed, list) or not listed:
            raise bad_request(f"'{param}': allowed_tools needs a mode ('auto' or 'required') and a list of tools",
                              param=param)
        allowed: list[str] = []
        for i, item in enumerate(listed):
            function = item.get("function") if isinstance(item, dict) else None
            name = function.get("name") if isinstance(function, dict) else item.get("name") \
                if isinstance(item, dict) else None
            _known(name, names, f"{param}.tools[{i}]")
            allowed.append(str(name))
        return ToolPlan([t for t in tools if t.name in allowed], mode, tuple(allowed), parallel)
    raise bad_request(f"'{param}': only function tools are supported, not {kind!r}", param=param)


def _known(name: Any, names: tuple[str, ...], param: str) -> None:
    if not isinstance(name, str) or name not in names:
        raise bad_request(f"'{param}': {name!r} is not one of the request's tools ({', '.join(names)})",
                          param=param)


# --- the grammar for a forced call ------------------------------------------------------------


def call_schema(tools: list[FunctionTool]) -> dict[str, Any]:
    """A JSON schema every forced answer validates against: `{"name": <one tool>, "arguments":
    <its parameters>}`. Each tool's `$defs` move to the root (prefixed by its name) so the
    `$ref`s inside its parameters still resolve once nested."""
    defs: dict[str, Any] = {}
    calls = []
    for tool in tools:
        arguments = _hoisted(tool.parameters, tool.name, defs)
        calls.append({"type": "object", "properties": {"name": {"const": tool.name}, "arguments": arguments},
                      "required": ["name", "arguments"], "additionalProperties": False})
    schema: dict[str, Any] = calls[0] if len(calls) == 1 else {"anyOf": calls}
    return {**schema, "$defs": defs} if defs else schema


def _hoisted(parameters: dict[str, Any], prefix: str, defs: dict[str, Any]) -> dict[str, Any]:
    local = {**parameters.get("definitions", {}), **parameters.get("$defs", {})}
    if not local:
        return parameters
    renamed = {f"#/{where}/{name}": f"#/$defs/{prefix}.{name}" for where in ("$defs", "definitions")
               for name in local}

    def rewrite(node: Any) -> Any:
        if isinstance(node, dict):
            return {k: renamed.get(v, v) if k == "$ref" and isinstance(v, str) else rewrite(v)
                    for k, v in node.items()}
        if isinstance(node, list):
            return [rewrite(v) for v in node]
        return node

    for name, schema in local.items():
        defs[f"{prefix}.{name}"] = rewrite(schema)
    result: dict[str, Any] = rewrite({k: v for k, v in parameters.items() if k not in ("$defs", "definitions")})
    return result


# --- tool turns in the conversation -----------------------------------------------------------


class ToolTurns:
    """Messages with tool calls and tool results, as both template kinds read them.

    Walk the conversation in order: an assistant's calls are remembered by id, so a tool result
    that names only its `tool_call_id` (OpenAI) also carries the function's name (Ollama's
    `.ToolName`, Jinja's `name`)."""

    def __init__(self) -> None:
        self._names: dict[str, str] = {}

    def message(self, role: str, content: str, *, tool_calls: list[dict[str, Any]] | None = None,
                tool_call_id: str | None = None, tool_name: str | None = None) -> dict[str, Any]:
        message: dict[str, Any] = {"role": role, "content": content}
        if tool_calls:
            message["tool_calls"] = [self._call(call, i) for i, call in enumerate(tool_calls)]
        if role == "tool":
            name = tool_name or self._names.get(tool_call_id or "", "")
            message.update(tool_name=name, name=name)
            if tool_call_id:
                message["tool_call_id"] = tool_call_id
        return message

    def _call(self, call: dict[str, Any], index: int) -> dict[str, Any]:
        function = call.get("function")
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            raise ApiError(400, f"'tool_calls[{index}].function.name' is required", param="messages")
        arguments = function.get("arguments")
        if isinstance(arguments, str):  # OpenAI sends a JSON string; templates want the object
            try:
                decoded = json.loads(arguments) if arguments.strip() else {}
            except ValueError:
                decoded = None
            arguments = decoded if isinstance(decoded, dict) else arguments
        call_id = call.get("id") if isinstance(call.get("id"), str) else ""
        if call_id:
            self._names[call_id] = function["name"]
        out = copy.deepcopy({**function, "arguments": {} if arguments is None else arguments})
        return {"id": call_id, "type": "function", "function": out}
