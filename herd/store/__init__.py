"""Herd's model store: Ollama-compatible names, Modelfiles, options, GGUF metadata and blobs."""

from herd.store.gguf import GGUFError, GGUFInfo, read_gguf, read_gguf_array
from herd.store.modelfile import Modelfile, ModelfileError, parse_modelfile, render_modelfile
from herd.store.names import InvalidDigest, InvalidModelName, ModelName, parse_digest, parse_name
from herd.store.options import OptionError, coerce_option, known_option, parse_options
from herd.store.store import (
    CorruptModel,
    DigestMismatch,
    ModelDetails,
    ModelNotFound,
    ModelRecord,
    ModelStore,
    StoreError,
    UnsafePath,
)

__all__ = [
    "CorruptModel",
    "DigestMismatch",
    "GGUFError",
    "GGUFInfo",
    "InvalidDigest",
    "InvalidModelName",
    "ModelDetails",
    "ModelName",
    "ModelNotFound",
    "ModelRecord",
    "ModelStore",
    "Modelfile",
    "ModelfileError",
    "OptionError",
    "StoreError",
    "UnsafePath",
    "coerce_option",
    "known_option",
    "parse_digest",
    "parse_modelfile",
    "parse_name",
    "parse_options",
    "read_gguf",
    "read_gguf_array",
    "render_modelfile",
]
