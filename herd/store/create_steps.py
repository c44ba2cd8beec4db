"""The steps of `ModelStore.create` that read or rewrite GGUF files: Ollama's template
auto-detection, LoRA adapter checks, and quantization into a new blob."""

from __future__ import annotations

import contextlib
from pathlib import Path

from herd.chat_prompt import NamedTemplate, match_named_template
from herd.store.blobs import BlobStore, StoreError
from herd.store.gguf import GGUFError, GGUFInfo, read_gguf
from herd.store.progress import Progress, ProgressFn
from herd.store.quantize import PROGRESS_DIGEST, check_source, quantize_gguf


def read_checked(path: Path, what: str) -> GGUFInfo:
    try:
        return read_gguf(path)  # refuses anything that is not a well-formed GGUF file
    except GGUFError as exc:
        raise StoreError(f"{what}: {exc}") from exc


def gguf_kind(info: GGUFInfo) -> str:
    """`general.type`: "model" when absent, "adapter" for a LoRA."""
    kind = info.metadata.get("general.type")
    return kind if isinstance(kind, str) and kind else "model"


def autodetect_template(info: GGUFInfo) -> NamedTemplate | None:
    """Ollama's detectChatTemplate: the named Go template nearest the GGUF's Jinja chat template
    (edit distance below 100), or None to keep rendering with the Jinja template itself."""
    jinja = info.chat_template
    return match_named_template(jinja) if jinja else None


def check_adapter(info: GGUFInfo, what: str, base: GGUFInfo) -> None:
    """Refuse at create time what llama.cpp would refuse at load time (llama-adapter.cpp):
    not a LoRA, another architecture, or tensors that do not fit the base model's."""
    if gguf_kind(info) != "adapter":
        raise StoreError(f"{what}: not a LoRA adapter (general.type is {gguf_kind(info)!r}, expected 'adapter')")
    adapter_type = info.metadata.get("adapter.type")
    if adapter_type != "lora":
        raise StoreError(f"{what}: adapter.type is {adapter_type!r}; only 'lora' adapters are supported")
    if info.architecture != base.architecture:
        raise StoreError(f"{what}: the adapter is for architecture {info.architecture!r}, "
                         f"the model is {base.architecture!r}")
    shapes = {t.name: t.shape for t in base.tensors}
    for tensor in info.tensors:
        name, _, part = tensor.name.rpartition(".")
        if part not in ("lora_a", "lora_b"):
            continue  # norms and the like: llama.cpp skips them
        target = shapes.get(name)
        if target is None:
            raise StoreError(f"{what}: the model has no tensor {name!r} (an adapter for another model?)")
        # ggml order: lora_a is [n_in, rank], lora_b is [rank, n_out]; token_embd's are flipped.
        dim, expected = (0, target[0]) if part == "lora_a" else (1, target[1] if len(target) > 1 else 1)
        if not name.startswith("token_embd") and (len(tensor.shape) < 2 or tensor.shape[dim] != expected):
            raise StoreError(f"{what}: tensor {tensor.name!r} has shape {list(tensor.shape)}, which does not fit "
                             f"the model's {name!r} {list(target)} (an adapter for another model?)")


def quantize_weights(blobs: BlobStore, weights: Path, info: GGUFInfo, quantization: str,
                     report: ProgressFn) -> tuple[Path, GGUFInfo] | None:
    """The weights quantized into a new blob, or None when they already are of that type.

    Raises QuantizeError for a model that is not full precision (Ollama's rule).
    """
    current = info.file_type
    check_source(current)
    if current == quantization:
        return None
    size = weights.stat().st_size
    status = f"quantizing {current} model to {quantization}"
    report(Progress(status, digest=PROGRESS_DIGEST, total=size, completed=0))
    temp = blobs.temp_path("quantize")
    try:
        quantize_gguf(weights, temp, quantization)
        report(Progress(status, digest=PROGRESS_DIGEST, total=size, completed=size))
        report(Progress("verifying conversion"))
        quantized = read_checked(temp, "quantized model")
        digest = blobs.adopt(temp)
    finally:
        with contextlib.suppress(FileNotFoundError):
            temp.unlink()
    return blobs.path(digest), quantized
