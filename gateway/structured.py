"""Structured outputs: each dialect's way of asking for JSON, as one `OutputFormat`.

- Ollama `format`: `"json"` (any JSON object) or a JSON schema object.
- OpenAI `response_format`: `{"type": "text" | "json_object" | "json_schema", ...}`.
- Responses `text.format`: the same types, with the schema's fields inlined.

Schemas are checked here, before a job is queued: a valid JSON Schema (the `jsonschema`
package's meta-schema check) that the worker's grammar compiler can express
(`herd.json_schema.unsupported`). Anything else is a 400 naming the field. Forced tool calls
reuse `output_format()` with a schema built from the tool's parameters.
"""

from __future__ import annotations

import functools
from typing import Any, Literal

import jsonschema
import msgspec

from gateway.errors import bad_request
from herd.json_schema import unsupported
from herd.protocol import OutputFormat

MAX_SCHEMA_BYTES = 256 * 1024


class JsonSchemaSpec(msgspec.Struct, forbid_unknown_fields=True):
    """OpenAI `response_format.json_schema`."""

    name: str | None = None
    schema: dict[str, Any] | None = None
    strict: bool | None = None
    description: str | None = None


class ResponseFormat(msgspec.Struct, forbid_unknown_fields=True):
    """OpenAI `response_format`; `schema` on `json_object` is llama-server's extension."""

    type: Literal["text", "json_object", "json_schema"]
    json_schema: JsonSchemaSpec | None = None
    schema: dict[str, Any] | None = None


class TextFormat(msgspec.Struct, forbid_unknown_fields=True):
    """Responses API `text.format`."""

    type: Literal["text", "json_object", "json_schema"]
    name: str | None = None
    schema: dict[str, Any] | None = None
    strict: bool | None = None
    description: str | None = None


@functools.lru_cache(maxsize=256)
def _schema_problem(canonical: str) -> str | None:
    schema = msgspec.json.decode(canonical)
    try:
        jsonschema.validators.validator_for(schema).check_schema(schema)
    except jsonschema.SchemaError as exc:
        where = "/".join(str(p) for p in exc.absolute_path)
        return f"invalid JSON schema: {exc.message}" + (f" (at '#/{where}')" if where else "")
    problem = unsupported(schema)
    return f"unsupported JSON schema: {problem}" if problem else None


def output_format(schema: Any, param: str) -> OutputFormat:
    """A grammar constraint to `schema` (a JSON schema object), or a 400 naming `param`."""
    if not isinstance(schema, dict):
        raise bad_request(f"'{param}' must be a JSON schema object", param=param)
    canonical = msgspec.json.encode(schema).decode()
    if len(canonical) > MAX_SCHEMA_BYTES:
        raise bad_request(f"'{param}' is larger than {MAX_SCHEMA_BYTES} bytes", param=param)
    problem = _schema_problem(canonical)
    if problem:
        raise bad_request(f"{problem} in '{param}'", param=param)
    return OutputFormat(json_schema=schema)


def ollama_format(value: str | dict[str, Any] | None) -> OutputFormat | None:
    """Ollama's `format`: absent or "" for free text, "json" for any object, or a schema."""
    if value is None or value == "":
        return None
    if value == "json":
        return OutputFormat()
    if isinstance(value, str):
        raise bad_request('invalid format: expected "json" or a valid JSON Schema object', param="format")
    return output_format(value, "format")


def _typed(kind: type[Any], value: dict[str, Any], param: str) -> Any:
    try:
        return msgspec.convert(value, kind)
    except msgspec.ValidationError as exc:
        text = str(exc)
        where = text.rsplit("at `$.", 1)[1].rstrip("`") if "at `$." in text else None
        raise bad_request(f"invalid '{param}': {text}", param=f"{param}.{where}" if where else param) from exc


def openai_response_format(value: dict[str, Any] | None) -> OutputFormat | None:
    """OpenAI's `response_format` on /v1/chat/completions and /v1/completions."""
    if value is None:
        return None
    spec: ResponseFormat = _typed(ResponseFormat, value, "response_format")
    if spec.type == "text":
        return None
    if spec.type == "json_object":
        return OutputFormat() if spec.schema is None else output_format(spec.schema, "response_format.schema")
    if spec.json_schema is None:
        raise bad_request("'response_format.json_schema' is required when type is 'json_schema'",
                          param="response_format.json_schema")
    if spec.json_schema.schema is None:  # OpenAI allows it: nothing constrains the object
        return OutputFormat()
    return output_format(spec.json_schema.schema, "response_format.json_schema.schema")


def responses_text_format(text: dict[str, Any] | None) -> tuple[OutputFormat | None, dict[str, Any]]:
    """The Responses API's `text.format`: the constraint, and the format to echo back."""
    raw = (text or {}).get("format")
    if raw is None:
        return None, {"type": "text"}
    if not isinstance(raw, dict):
        raise bad_request("'text.format' must be an object", param="text.format")
    spec: TextFormat = _typed(TextFormat, raw, "text.format")
    echo = msgspec.to_builtins(spec)  # without the nulls the SDK would reject
    echo = {k: v for k, v in echo.items() if v is not None}
    if spec.type == "text":
        return None, echo
    if spec.type == "json_object" or spec.schema is None:
        return OutputFormat(), echo
    return output_format(spec.schema, "text.format.schema"), echo
