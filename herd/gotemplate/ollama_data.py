"""Ollama's request data as its templates see it: Go structs, named types and their String() methods.

Mirrors Ollama's template package (templateMessage, templateTool, templateArgs, ...) and the api
types they hold: field names, nil versus empty, struct-tag JSON, and which values print as JSON.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from herd.gotemplate.gojson import marshal
from herd.gotemplate.values import GoMap, GoSlice, GoStruct


def json_string(v: Any) -> str:
    """The String() methods that are json.Marshal; Go ignores the error (NaN) and prints nothing."""
    try:
        return marshal(v)
    except ValueError:
        return ""


def _args_string(m: GoMap) -> str:
    return "{}" if m.nil else json_string(m)  # templateArgs.String()


def _property_type_string(t: GoSlice) -> str:  # api.PropertyType.String()
    return "" if not t else t[0] if len(t) == 1 else "[" + " ".join(t) + "]"


def _str(v: Any) -> str:
    return v if isinstance(v, str) else ""


def _dict(v: Any) -> Mapping[str, Any]:
    return v if isinstance(v, Mapping) else {}


def _list(v: Any, type_name: str, convert: Callable[[Any], Any] | None = None) -> GoSlice:
    """A Go slice decoded from JSON: nil when the key was absent or null."""
    if not isinstance(v, (list, tuple)):
        return GoSlice(type_name=type_name, nil=True)
    return GoSlice((convert(x) if convert else x for x in v), type_name=type_name)


def _tool_property(p: Any) -> GoStruct:
    p = _dict(p)
    kind = p.get("type")  # a PropertyType: one type name or a list of them
    if isinstance(kind, str):
        types = [kind]
    else:
        types = [t for t in kind if isinstance(t, str)] if isinstance(kind, list) else []
    props = p.get("properties")
    return GoStruct("api.ToolProperty", {
        "AnyOf": _list(p.get("anyOf"), "[]api.ToolProperty", _tool_property),
        "Type": GoSlice(types, type_name="api.PropertyType", nil=not types, string=_property_type_string,
                        marshal=lambda t: t[0] if len(t) == 1 else list(t)),
        "Items": p.get("items"),
        "Description": _str(p.get("description")),
        "Enum": _list(p.get("enum"), "[]interface {}"),
        # a *ToolPropertiesMap: nil when absent, else an ordered map
        "Properties": GoMap({k: _tool_property(v) for k, v in props.items()}, type_name="*api.ToolPropertiesMap",
                            ordered=True) if isinstance(props, Mapping) else None,
    }, tags={"AnyOf": ("anyOf", "omitempty"), "Type": ("type", "omitempty"), "Items": ("items", "omitnil"),
             "Description": ("description", "omitempty"), "Enum": ("enum", "omitempty"),
             "Properties": ("properties", "omitnil")})


def tool_value(t: Any) -> GoStruct:
    """A template.templateTool from an API tool."""
    t = _dict(t)
    fn = _dict(t.get("function"))
    params = _dict(fn.get("parameters"))
    props = params.get("properties")
    properties = GoMap({k: _tool_property(v) for k, v in props.items()} if isinstance(props, Mapping) else None,
                       type_name="template.templateProperties", nil=not isinstance(props, Mapping),
                       string=lambda m: "{}" if m.nil else json_string(m))
    # Ollama's own structs have no String() here; older Ollama printed these as JSON, which is what
    # library templates such as qwen2.5's `{{ .Function }}` expect.
    parameters = GoStruct("template.templateToolFunctionParameters", {
        "Type": _str(params.get("type")), "Defs": params.get("$defs"), "Items": params.get("items"),
        "Required": _list(params.get("required"), "[]string"), "Properties": properties,
    }, tags={"Type": ("type", ""), "Defs": ("$defs", "omitnil"), "Items": ("items", "omitnil"),
             "Required": ("required", "omitempty"), "Properties": ("properties", "")}, string=json_string)
    function = GoStruct("template.templateToolFunction", {
        "Name": _str(fn.get("name")), "Description": _str(fn.get("description")), "Parameters": parameters,
    }, tags={"Name": ("name", ""), "Description": ("description", ""), "Parameters": ("parameters", "")},
        string=json_string)
    return GoStruct("template.templateTool", {"Type": _str(t.get("type")), "Items": t.get("items"),
                                              "Function": function},
                    tags={"Type": ("type", ""), "Items": ("items", "omitnil"), "Function": ("function", "")},
                    string=json_string)


def _tool_call(c: Any) -> GoStruct:
    c = _dict(c)
    fn = _dict(c.get("function"))
    args = fn.get("arguments")
    if isinstance(args, str):  # OpenAI clients send arguments as a JSON string
        try:
            args = json.loads(args)
        except ValueError:
            args = None
    index = fn.get("index")
    function = GoStruct("template.templateToolCallFunction", {
        "Index": index if isinstance(index, int) and not isinstance(index, bool) else 0,
        "Name": _str(fn.get("name")),
        "Arguments": GoMap(args if isinstance(args, Mapping) else None, type_name="template.templateArgs",
                           nil=not isinstance(args, Mapping), string=_args_string),
    })
    return GoStruct("template.templateToolCall", {"ID": _str(c.get("id")), "Function": function})


@dataclass
class ChatMessage:
    """An api.Message: what Ollama decodes from a request, before it becomes a templateMessage."""

    role: str
    content: str
    thinking: str = ""
    images: list[bytes] = field(default_factory=list)
    tool_calls: list[Any] = field(default_factory=list)
    tool_name: str = ""
    tool_call_id: str = ""

    @classmethod
    def from_api(cls, m: Mapping[str, Any]) -> ChatMessage:
        content = m.get("content") or ""
        if not isinstance(content, str):
            raise ValueError("message content must be a string")
        images = []
        for image in m.get("images") or []:
            try:
                images.append(image if isinstance(image, bytes) else base64.b64decode(image, validate=True))
            except (binascii.Error, TypeError, ValueError):
                raise ValueError("invalid image: not base64") from None
        return cls(_str(m.get("role")).lower(), content, _str(m.get("thinking")), images,
                   list(m.get("tool_calls") or []), _str(m.get("tool_name")), _str(m.get("tool_call_id")))

    def to_template(self) -> GoStruct:
        """The *template.templateMessage a template ranges over."""
        return GoStruct("template.templateMessage", {
            "Role": self.role, "Content": self.content, "Thinking": self.thinking,
            "Images": GoSlice(self.images, type_name="[]api.ImageData", nil=not self.images),
            "ToolCalls": GoSlice((_tool_call(c) for c in self.tool_calls), type_name="[]template.templateToolCall",
                                 nil=not self.tool_calls),
            "ToolName": self.tool_name, "ToolCallID": self.tool_call_id,
        }, pointer=True)
