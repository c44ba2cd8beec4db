"""Merge sampling options: request > Modelfile PARAMETER > Ollama's defaults."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec

from gateway.errors import bad_request
from herd.protocol import SamplingOptions
from herd.store.options import OptionError, coerce_option, known_option

_JOB_FIELDS = frozenset(SamplingOptions.__struct_fields__)


def merge_options(*layers: Mapping[str, Any] | None) -> SamplingOptions:
    """Later layers win. Values are type-checked and unknown names refused; options that shape
    loading rather than sampling (num_thread, num_gpu, ...) are accepted and left to the
    worker's settings (docs/api.md says which)."""
    merged: dict[str, Any] = {}
    for layer in layers:
        for name, value in (layer or {}).items():
            if value is None:
                continue
            if not known_option(name):
                raise bad_request(f"unknown option '{name}'", param=f"options.{name}")
            try:
                coerced = coerce_option(name, value)
            except OptionError as exc:
                raise bad_request(str(exc), param=f"options.{name}") from exc
            if name in _JOB_FIELDS:
                merged[name] = coerced
    if isinstance(merged.get("stop"), str):
        merged["stop"] = [merged["stop"]]
    if merged.get("stop"):
        merged["stop"] = [s for s in merged["stop"] if s]
    try:
        return msgspec.convert(merged, SamplingOptions)
    except msgspec.ValidationError as exc:
        raise bad_request(f"invalid options: {exc}") from exc
