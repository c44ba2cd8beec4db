"""Ollama's generation and runner options: names, types, defaults and coercion.

One table serves both entry points. Modelfile `PARAMETER` values arrive as text and an unknown
name is an error (`unknown parameter 'x'`, as `api.FormatParams`); API `options` arrive as JSON
and an unknown name is logged and ignored (as `api.Options.FromMap`). A value of the wrong type
is an error in both, worded like Ollama: `option "top_k" must be of type integer`.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import re
from collections.abc import Mapping
from typing import Literal

log = logging.getLogger(__name__)

OptionValue = int | float | bool | list[str]
Kind = Literal["integer", "float32", "boolean", "array"]

_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
# Go strconv.ParseInt / ParseFloat / ParseBool accept these spellings (no underscores, no spaces).
_INT_TEXT = re.compile(r"[+-]?[0-9]+")
_FLOAT_TEXT = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_BOOL_TEXT = {"1": True, "t": True, "T": True, "TRUE": True, "true": True, "True": True,
              "0": False, "f": False, "F": False, "FALSE": False, "false": False, "False": False}


class OptionError(ValueError):
    """An option value of the wrong type or out of range."""


class UnknownOption(OptionError):
    """An option name Ollama does not know (only an error in a Modelfile)."""


@dataclasses.dataclass(frozen=True)
class OptionSpec:
    name: str
    kind: Kind
    default: OptionValue | None  # None: decided at load time (settings, hardware, model)
    doc: str


_SPECS = (
    OptionSpec("num_ctx", "integer", None, "Context window in tokens; default HERD_CONTEXT_LENGTH, "
               "capped at the model's training context."),
    OptionSpec("num_predict", "integer", -1, "Most tokens to generate; -1: ten contexts (one without shift)."),
    OptionSpec("num_keep", "integer", 4, "Prompt tokens kept when a prompt is truncated or the context shifts."),
    OptionSpec("temperature", "float32", 0.8, "Sampling temperature; 0 is greedy."),
    OptionSpec("top_k", "integer", 40, "Sample from the k most likely tokens; 0 disables."),
    OptionSpec("top_p", "float32", 0.9, "Nucleus sampling threshold."),
    OptionSpec("min_p", "float32", 0.0, "Drop tokens below min_p times the top probability."),
    OptionSpec("typical_p", "float32", 1.0, "Locally typical sampling; 1 disables."),
    OptionSpec("repeat_last_n", "integer", 64, "Tokens looked back on for penalties; -1: num_ctx."),
    OptionSpec("repeat_penalty", "float32", 1.0, "Penalty for repeated tokens; 1 disables."),
    OptionSpec("presence_penalty", "float32", 0.0, "Penalty for tokens already present."),
    OptionSpec("frequency_penalty", "float32", 0.0, "Penalty scaled by how often a token appeared."),
    OptionSpec("seed", "integer", -1, "Random seed; -1 picks one per request."),
    OptionSpec("stop", "array", [], "Strings that end generation (not included in the output)."),
    OptionSpec("num_batch", "integer", 512, "Prompt tokens decoded per batch."),
    OptionSpec("num_gpu", "integer", -1, "Layers offloaded to the GPU; -1 auto, 0 CPU only."),
    OptionSpec("main_gpu", "integer", 0, "GPU that holds small tensors."),
    OptionSpec("use_mmap", "boolean", None, "Memory-map the weights; unset lets the runtime decide."),
    OptionSpec("num_thread", "integer", 0, "Decode threads; 0 lets the runtime decide."),
    OptionSpec("draft_num_predict", "integer", 4, "Tokens proposed per step by a draft model."),
    # Removed from Ollama in 2025 (#10581) but llama.cpp still samples with them, so we keep them.
    OptionSpec("mirostat", "integer", 0, "Mirostat sampling: 0 off, 1 v1, 2 v2."),
    OptionSpec("mirostat_tau", "float32", 5.0, "Mirostat target entropy."),
    OptionSpec("mirostat_eta", "float32", 0.1, "Mirostat learning rate."),
)
OPTIONS: Mapping[str, OptionSpec] = {spec.name: spec for spec in _SPECS}

# Ollama's Modelfile parser warns about and drops these (parser/parser.go); older ones too.
DEPRECATED = frozenset({
    "penalize_newline", "low_vram", "f16_kv", "logits_all", "vocab_only", "use_mlock", "tfs_z", "numa",
})


def known_option(name: str) -> bool:
    return name in OPTIONS


def is_deprecated(name: str) -> bool:
    return name in DEPRECATED


def default_options() -> dict[str, OptionValue]:
    """Every option with a fixed default (a fresh list for `stop`)."""
    out: dict[str, OptionValue] = {}
    for spec in _SPECS:
        if spec.default is not None:
            out[spec.name] = list(spec.default) if isinstance(spec.default, list) else spec.default
    return out


def _type_error(name: str, kind: Kind) -> OptionError:
    return OptionError(f'option "{name}" must be of type {kind}')


def _int(name: str, value: object, from_text: bool) -> int:
    if from_text and isinstance(value, str) and _INT_TEXT.fullmatch(value):
        number = int(value)
    elif not from_text and isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif not from_text and isinstance(value, float) and math.isfinite(value):
        number = int(value)  # JSON has one number type; Ollama truncates like Go's int64(f)
    else:
        raise _type_error(name, "integer")
    if not _INT64_MIN <= number <= _INT64_MAX:
        raise OptionError(f'option "{name}" is out of range')
    return number


def _float(name: str, value: object, from_text: bool) -> float:
    if from_text:
        if not (isinstance(value, str) and _FLOAT_TEXT.fullmatch(value)):
            raise _type_error(name, "float32")
    elif isinstance(value, bool) or not isinstance(value, int | float):
        raise _type_error(name, "float32")
    try:
        number = float(value)
    except OverflowError:  # an integer beyond any float
        raise OptionError(f'option "{name}" is out of range') from None
    # NaN or infinity would poison sampling; Go would accept them, we refuse.
    if not math.isfinite(number):
        raise OptionError(f'option "{name}" must be a finite number')
    return number


def _bool(name: str, value: object, from_text: bool) -> bool:
    if from_text and isinstance(value, str) and value in _BOOL_TEXT:
        return _BOOL_TEXT[value]
    if not from_text and isinstance(value, bool):
        return value
    raise _type_error(name, "boolean")


def _strings(name: str, value: object, from_text: bool) -> list[str]:
    if from_text and isinstance(value, str):
        return [value]  # a Modelfile gives one stop string per PARAMETER line
    if from_text or not isinstance(value, list):
        raise _type_error(name, "array")
    if not all(isinstance(item, str) for item in value):
        raise OptionError(f'option "{name}" must be of an array of strings')
    return list(value)


def coerce_option(name: str, value: object, *, from_text: bool = False) -> OptionValue:
    """Check one option and return it with its proper Python type.

    `from_text=True` parses Modelfile text the way Go's strconv does; otherwise `value` is a
    decoded JSON value. Raises UnknownOption for a name not in OPTIONS (callers handling API
    options test `known_option` first and skip those).
    """
    spec = OPTIONS.get(name)
    if spec is None:
        raise UnknownOption(f"unknown parameter '{name}'")
    if spec.kind == "integer":
        return _int(name, value, from_text)
    if spec.kind == "float32":
        return _float(name, value, from_text)
    if spec.kind == "boolean":
        return _bool(name, value, from_text)
    return _strings(name, value, from_text)


def parse_options(raw: Mapping[str, object]) -> dict[str, OptionValue]:
    """Coerce API `options`: unknown names are logged and dropped, JSON nulls skipped."""
    out: dict[str, OptionValue] = {}
    for name, value in raw.items():
        if not known_option(name):
            log.warning("ignoring unknown option %r", name)
            continue
        if value is not None:
            out[name] = coerce_option(name, value)
    return out
