"""Ollama's manifest format: the media types, the manifest and config Structs, and Go-style JSON.

A manifest lists a config blob and layer blobs by digest; the config is Ollama's ConfigV2.
Blobs Herd writes (configs, parameters, messages) are encoded as Go's json.Encoder would, so
the same content hashes to the same digest as in Ollama.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

import msgspec

MEDIA_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
MEDIA_CONFIG = "application/vnd.docker.container.image.v1+json"
MEDIA_MODEL = "application/vnd.ollama.image.model"
MEDIA_PROJECTOR = "application/vnd.ollama.image.projector"
MEDIA_ADAPTER = "application/vnd.ollama.image.adapter"
MEDIA_TEMPLATE = "application/vnd.ollama.image.template"
MEDIA_SYSTEM = "application/vnd.ollama.image.system"
MEDIA_PARAMS = "application/vnd.ollama.image.params"
MEDIA_LICENSE = "application/vnd.ollama.image.license"
MEDIA_MESSAGES = "application/vnd.ollama.image.messages"


class Layer(msgspec.Struct, rename="camel", omit_defaults=True):
    media_type: str
    digest: str
    size: Annotated[int, msgspec.Meta(ge=0)]
    from_: str = msgspec.field(default="", name="from")
    name: str = ""


class Manifest(msgspec.Struct, rename="camel", kw_only=True):
    schema_version: int  # fields in Go's order, so our manifests read like Ollama's
    media_type: str = MEDIA_MANIFEST
    config: Layer
    layers: list[Layer]


class ModelConfig(msgspec.Struct):
    """Ollama's ConfigV2; only the fields Herd reads (unknown ones are ignored)."""

    model_format: str = ""
    model_family: str = ""
    model_families: list[str] | None = None
    model_type: str = ""
    file_type: str = ""
    requires: str = ""


_GO_ESCAPES = (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"), ("\u2028", "\\u2028"), ("\u2029", "\\u2029"))


def _whole(value: Any) -> Any:
    """`value` with whole floats as ints, as Go prints them (no `.0`)."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e21:
        return int(value)
    if isinstance(value, list):
        return [_whole(x) for x in value]
    if isinstance(value, dict):
        return {k: _whole(x) for k, x in value.items()}
    return value


def go_json(value: Any, *, sort_keys: bool = False) -> bytes:
    """JSON as Go's json.Encoder writes it, so blobs we write hash like Ollama's.

    Go prints whole floats without `.0`, escapes <, > and & and ends with a newline.
    """
    text = json.dumps(_whole(value), ensure_ascii=False, separators=(",", ":"), sort_keys=sort_keys)
    for char, escape in _GO_ESCAPES:
        text = text.replace(char, escape)
    return (text + "\n").encode()
