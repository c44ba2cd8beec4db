"""What the worker's grammar compiler can do with a JSON schema, checked without llama.cpp.

The worker turns a schema into a llama.cpp grammar with llama.cpp's converter
(`worker/grammar.py`). Some schemas it cannot express at all (remote `$ref`s, unanchored
`pattern`s, `false` subschemas, impossible bounds); `unsupported()` names the first one so
the gateway answers 400 before a job is queued, and the worker refuses the same schemas
when a job reaches it some other way. Keywords that only narrow values (`minimum`,
`multipleOf`, `uniqueItems`, `not`, `if`/`then`/`else`, string `format`s other than date,
time, date-time and uuid) are accepted and not enforced: the output still has the schema's
shape. Imports only the standard library, like `herd.protocol`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

# Keywords whose value is one subschema, a list of them, or a name → subschema map.
_ONE = ("items", "additionalProperties", "not", "if", "then", "else", "contains", "additionalItems",
        "propertyNames", "unevaluatedItems", "unevaluatedProperties")
_LIST = ("prefixItems", "anyOf", "oneOf", "allOf", "items")
_MAP = ("properties", "$defs", "definitions", "patternProperties", "dependentSchemas")

MAX_DEPTH = 48  # nesting of subschemas: the converter recurses once per level
MAX_REPEAT = 1000  # minItems/maxItems/minLength/maxLength: the grammar spells each repetition out


def subschemas(schema: dict[str, Any]) -> Iterator[tuple[str, str, Any]]:
    """The direct subschemas of a schema, as (keyword, path below the schema, subschema)."""
    for key in _ONE:
        value = schema.get(key)
        if isinstance(value, dict | bool):
            yield key, key, value
    for key in _LIST:
        value = schema.get(key)
        if isinstance(value, list):
            for i, item in enumerate(value):
                yield key, f"{key}/{i}", item
    for key in _MAP:
        value = schema.get(key)
        if isinstance(value, dict):
            for name, item in value.items():
                yield key, f"{key}/{name}", item


def walk(schema: Any) -> Iterator[tuple[str, Any, int, dict[str, Any] | None, str]]:
    """Every schema node from the root down, as (path, node, depth, parent, keyword)."""
    stack: list[tuple[str, Any, int, dict[str, Any] | None, str]] = [("", schema, 0, None, "")]
    while stack:
        path, node, depth, parent, keyword = stack.pop()
        yield path, node, depth, parent, keyword
        if isinstance(node, dict) and depth < MAX_DEPTH:
            children = [(f"{path}/{sub_path}", sub, depth + 1, node, key) for key, sub_path, sub in subschemas(node)]
            stack.extend(reversed(children))


def normalized(schema: Any) -> Any:
    """A copy in which a `true` subschema ("anything") is `{}`, as the converter expects."""
    if not isinstance(schema, dict):
        return {} if schema is True else schema
    out = dict(schema)
    for key in _ONE:
        if key != "additionalProperties" and isinstance(out.get(key), dict | bool):
            out[key] = normalized(out[key])
    for key in _LIST:
        if isinstance(out.get(key), list):
            out[key] = [normalized(item) for item in out[key]]
    for key in _MAP:
        if isinstance(out.get(key), dict):
            out[key] = {name: normalized(item) for name, item in out[key].items()}
    return out


def _resolves(root: dict[str, Any], ref: str) -> bool:
    target: Any = root
    for part in ref[2:].split("/"):
        part = part.replace("~1", "/").replace("~0", "~")
        if not isinstance(target, dict) or part not in target:
            return False
        target = target[part]
    return isinstance(target, dict | bool)


def _bounds(node: dict[str, Any], low: str, high: str) -> str | None:
    lo, hi = node.get(low, 0), node.get(high)
    for key, value in ((low, lo), (high, hi)):
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 0):
            return f"'{key}' must be a non-negative integer"
        if isinstance(value, int) and value > MAX_REPEAT:
            return f"'{key}' above {MAX_REPEAT} is not supported"
    if isinstance(hi, int) and isinstance(lo, int) and hi < lo:
        return f"'{high}' is less than '{low}'"
    return None


def _node_problem(root: dict[str, Any], parent: dict[str, Any] | None, key: str, node: Any) -> str | None:
    if node is False:
        # `additionalProperties: false` closes an object; `items: false` after prefixItems ends a tuple.
        if key == "additionalProperties" or (key == "items" and parent is not None and "prefixItems" in parent):
            return None
        return "a 'false' subschema (matches nothing) is not supported"
    if node is True:
        return None
    if not isinstance(node, dict):
        return "a schema must be an object"
    ref = node.get("$ref")
    if ref is not None:
        if not isinstance(ref, str) or not ref.startswith("#/"):
            return f"'$ref' {ref!r} is not supported: only local references ('#/$defs/...') are"
        if not _resolves(root, ref):
            return f"'$ref' {ref!r} does not resolve"
    pattern = node.get("pattern")
    if isinstance(pattern, str) and not (pattern.startswith("^") and pattern.endswith("$")):
        return "'pattern' must start with '^' and end with '$'"
    if isinstance(pattern, str) and "(?" in pattern:
        return "'pattern' with lookarounds or inline flags is not supported"
    for keyword in ("enum", "anyOf", "oneOf", "allOf"):
        if keyword in node and (not isinstance(node[keyword], list) or not node[keyword]):
            return f"'{keyword}' must be a non-empty array"
    if "allOf" in node and "properties" not in node and "$ref" not in node:
        for part in node["allOf"]:
            if not (isinstance(part, dict) and ("properties" in part or "$ref" in part or "anyOf" in part)):
                return "'allOf' is supported only over object schemas with 'properties'"
    return _bounds(node, "minItems", "maxItems") or _bounds(node, "minLength", "maxLength")


def unsupported(schema: Any) -> str | None:
    """Why the grammar compiler cannot handle `schema` (a message naming where), or None."""
    if not isinstance(schema, dict):
        return "the schema must be a JSON object"
    for path, node, depth, parent, keyword in walk(schema):
        if depth >= MAX_DEPTH:
            return f"the schema is nested more than {MAX_DEPTH} levels deep"
        problem = _node_problem(schema, parent, keyword, node)
        if problem:
            return f"{problem} (at '#{path}')" if path else problem
    return None
