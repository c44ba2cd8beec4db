"""Quantize a GGUF model with llama.cpp's own quantizer (`llama_model_quantize`).

The gateway runs `/api/create`, and a gateway-only host may not have llama-cpp-python: it is
imported only when a quantization is asked for, and its absence is a clear error, never an
ImportError at start. The quantizer is CPU-bound and blocking; callers run it in a thread.

Accepted types: Ollama 0.12's list (fs/ggml ParseFileType: F32, F16, BF16, Q8_0, Q4_K_S,
Q4_K_M and its alias Q4_K) plus the llama.cpp types older Ollama releases accepted (Q4_0,
Q4_1, Q5_0, Q5_1, Q2_K, Q3_K_S/M/L, Q5_K_S/M, Q6_K), case-insensitive.
"""

from __future__ import annotations

import ctypes
import os
from pathlib import Path

from herd.cpus import usable_cores
from herd.store.blobs import StoreError

# Target name -> llama.h LLAMA_FTYPE_* id (herd.store.gguf.FILE_TYPES names them back).
QUANTIZE_TYPES: dict[str, int] = {
    "F32": 0, "F16": 1, "BF16": 32, "Q8_0": 7, "Q4_K_S": 14, "Q4_K_M": 15,
    "Q4_0": 2, "Q4_1": 3, "Q5_0": 8, "Q5_1": 9, "Q2_K": 10, "Q3_K_S": 11, "Q3_K_M": 12, "Q3_K_L": 13,
    "Q5_K_S": 16, "Q5_K_M": 17, "Q6_K": 18,
}
_ALIASES = {"Q4_K": "Q4_K_M"}
# File types a model may be quantized from: Ollama allows F16 and F32; llama.cpp reads BF16 as well.
SOURCE_TYPES = ("F16", "F32", "BF16")
# The zero digest Ollama sends with quantization progress, so clients draw a progress bar.
PROGRESS_DIGEST = "0000000000000000000"


class QuantizeError(StoreError):
    """A quantization that cannot be done: unknown type, already quantized model, quantizer failed."""


class QuantizerUnavailable(QuantizeError):
    """llama-cpp-python is not installed on this host."""


def parse_quantization(name: str) -> str:
    """The canonical type name for a user's `quantize` value; Ollama's error text otherwise."""
    upper = name.strip().upper()
    upper = _ALIASES.get(upper, upper)
    if upper not in QUANTIZE_TYPES:
        raise QuantizeError(f"unsupported quantization type {name} - supported types are "
                            + ", ".join(QUANTIZE_TYPES))
    return upper


def check_source(file_type: str | None) -> None:
    """Only full-precision models are quantized (Ollama's rule and text): requantizing loses quality."""
    if file_type not in SOURCE_TYPES:
        raise QuantizeError("quantization is only supported for F16 and F32 models")


def quantize_gguf(source: Path, target: Path, quantization: str, *, threads: int = 0) -> None:
    """Write `source` quantized to `quantization` as `target`. Blocking and CPU-bound."""
    try:
        import llama_cpp.llama_cpp as lib  # optional: absent on gateway-only hosts
    except ImportError as exc:
        raise QuantizerUnavailable(
            "quantization needs llama-cpp-python on the host that runs the gateway "
            "(pip install 'herd[worker]'), or quantize the GGUF before importing it") from exc
    params = lib.llama_model_quantize_default_params()
    params.ftype = QUANTIZE_TYPES[parse_quantization(quantization)]
    params.nthread = threads if threads > 0 else usable_cores()
    params.allow_requantize = False
    status = lib.llama_model_quantize(os.fsencode(source), os.fsencode(target), ctypes.byref(params))
    if status != 0:
        raise QuantizeError(f"llama.cpp could not quantize the model to {quantization} (status {status})")
