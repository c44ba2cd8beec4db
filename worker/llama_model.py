"""One GGUF file loaded through llama.cpp's C API: the weights and the vocabulary.

The weights are shared by every sequence of an engine; contexts are built on top of them
by `worker.engine`. Everything here goes through the low-level ctypes bindings.
"""

from __future__ import annotations

import ctypes
import logging
import os
import threading
from collections.abc import Sequence
from typing import Any

import llama_cpp.llama_cpp as _llama

from herd.cpus import usable_cores

# The bindings' annotations are loose (pointer types exist only under TYPE_CHECKING):
# treat the module as untyped and keep the typing at this module's own surface.
lib: Any = _llama

log = logging.getLogger("worker.llama")

_GGML_LOG_ERROR = 4
_GGML_LOG_CONT = 5

_init_lock = threading.Lock()
_backend_ready = False
_last_level = 0


def _on_log(level: int, text: bytes | None, _user_data: Any) -> None:
    # Called from C for every log line; stay cheap when nobody listens.
    global _last_level
    if level != _GGML_LOG_CONT:
        _last_level = level
    if _last_level >= _GGML_LOG_ERROR:
        log.error("%s", (text or b"").decode("utf-8", "replace").rstrip())
    elif log.isEnabledFor(logging.DEBUG):
        message = (text or b"").decode("utf-8", "replace").rstrip()
        if message:
            log.debug("%s", message)


# Kept at module level: ctypes frees a callback that nobody references, and C would call
# into freed memory.
_log_callback = lib.llama_log_callback(_on_log)


def init_backend() -> None:
    """Initialise llama.cpp once per process and route its logs into `logging`."""
    global _backend_ready
    with _init_lock:
        if _backend_ready:
            return
        # Importing llama_cpp installs a callback that prints to stderr: replace it.
        lib.llama_log_set(_log_callback, ctypes.c_void_p(0))
        lib.llama_backend_init()
        _backend_ready = True


def context_params(*, n_ctx: int, n_batch: int, n_seq_max: int, n_threads: int,
                   flash_attention: bool | None) -> Any:
    """The parameters of a context on loaded weights, one ubatch per batch. `n_threads` 0: one a
    physical core this process may use; `flash_attention` None: llama.cpp decides."""
    threads = n_threads if n_threads > 0 else usable_cores()
    params = lib.llama_context_default_params()
    params.n_ctx = n_ctx
    params.n_batch = n_batch
    params.n_ubatch = n_batch
    params.n_seq_max = n_seq_max
    params.n_threads = threads
    params.n_threads_batch = threads
    params.no_perf = True
    params.flash_attn_type = {
        None: lib.LLAMA_FLASH_ATTN_TYPE_AUTO,
        True: lib.LLAMA_FLASH_ATTN_TYPE_ENABLED,
        False: lib.LLAMA_FLASH_ATTN_TYPE_DISABLED,
    }[flash_attention]
    return params


class ModelLoadError(RuntimeError):
    """llama.cpp could not load the GGUF file."""


def cpu_has_amx(cpuinfo_path: str = "/proc/cpuinfo") -> bool:
    """Whether the CPU reports Intel AMX (Linux's cpuinfo flags); unknown counts as yes."""
    try:
        with open(cpuinfo_path, encoding="utf-8", errors="replace") as cpuinfo:
            flags = cpuinfo.read()
    except OSError:
        return True
    return any(flag in flags.split() for flag in ("amx_tile", "amx_int8", "amx_bf16"))


def extra_buffer_types_safe() -> bool:
    """Whether weights may go to llama.cpp's extra buffer types (repacked and AMX kernels).
    Repacking makes Q4_0/Q4_K/IQ4_NL/Q8_0 models decode and batch much faster (Q4_0 on 2
    cores: 122 -> 165 tok/s for one sequence, 209 -> 268 for eight), but llama-cpp-python
    0.3.36 crashes in ggml_backend_amx_mul_mat on the first decode on CPUs with AMX: there
    (or when the CPU cannot be read) they stay off."""
    return not cpu_has_amx()


class LoadedWeights:
    """A GGUF model loaded with mmap, its tokenizer, and the LoRA adapters its contexts apply."""

    def __init__(self, path: str, *, adapters: Sequence[str] = (), vocab_only: bool = False) -> None:
        """`vocab_only`: the tokenizer alone (no tensors; for counting a prompt's tokens)."""
        init_backend()
        if not os.path.isfile(path):
            raise ModelLoadError(f"no such model file: {path}")
        self.path = path
        self.size_bytes = os.path.getsize(path)
        params = lib.llama_model_default_params()
        params.use_extra_bufts = extra_buffer_types_safe()  # off on AMX CPUs: llama.cpp crashes there
        params.load_mode = lib.LLAMA_LOAD_MODE_MMAP
        params.vocab_only = vocab_only
        model = lib.llama_model_load_from_file(path.encode(), params)
        if not model:
            raise ModelLoadError(f"llama.cpp could not load {path}")
        self.model: Any = model
        try:
            self._adapters = self._load_adapters(adapters)
        except BaseException:
            self.free()
            raise
        self.vocab: Any = lib.llama_model_get_vocab(model)
        self.n_vocab: int = lib.llama_vocab_n_tokens(self.vocab)
        self.n_ctx_train: int = lib.llama_model_n_ctx_train(model)
        self.bos: int = lib.llama_vocab_bos(self.vocab)
        self.add_bos: bool = bool(lib.llama_vocab_get_add_bos(self.vocab))
        # The vocabulary never changes: detokenize each id once.
        self._pieces: dict[int, bytes] = {}
        self._piece_buf = ctypes.create_string_buffer(256)

    def _load_adapters(self, paths: Sequence[str]) -> Any:
        """The adapters as a C array (freed with the model, llama.h says), or None without any."""
        if not paths:
            return None
        loaded = []
        for path in paths:
            adapter = lib.llama_adapter_lora_init(self.model, path.encode())
            if not adapter:  # llama.cpp logged why (wrong architecture, shapes, not a LoRA)
                raise ModelLoadError(f"llama.cpp could not load the LoRA adapter {os.path.basename(path)} onto "
                                     f"{os.path.basename(self.path)}: wrong base model or not a LoRA GGUF")
            loaded.append(adapter)
        return (lib.llama_adapter_lora_p_ctypes * len(loaded))(*loaded)

    def apply_adapters(self, ctx: Any) -> None:
        """Use this model's LoRA adapters (scale 1) in a context made on these weights."""
        if self._adapters is None:
            return
        n = len(self._adapters)
        if lib.llama_set_adapters_lora(ctx, self._adapters, n, (ctypes.c_float * n)(*([1.0] * n))) != 0:
            raise ModelLoadError("llama.cpp could not apply the LoRA adapters to a context")

    def tokenize(self, text: str, add_special: bool = True, parse_special: bool = True) -> list[int]:
        data = text.encode("utf-8", "replace")
        capacity = len(data) + 8
        while True:
            buf = (lib.llama_token * capacity)()
            n = lib.llama_tokenize(self.vocab, data, len(data), buf, capacity, add_special, parse_special)
            if n >= 0:
                break
            if n == -(2**31):
                raise ValueError("the input is too long to tokenize")
            capacity = -n
        tokens = list(buf[:n])
        # A rendered template that already starts with the BOS text gets a second BOS from
        # add_special; models degrade on a doubled BOS.
        if add_special and self.add_bos and len(tokens) >= 2 and tokens[0] == tokens[1] == self.bos:
            del tokens[0]
        return tokens

    def token_piece(self, token: int) -> bytes:
        piece = self._pieces.get(token)
        if piece is None:
            buf = self._piece_buf
            # special=True renders control tokens as text, as Ollama does.
            n = lib.llama_token_to_piece(self.vocab, token, buf, len(buf), 0, True)
            if n < 0:
                buf = ctypes.create_string_buffer(-n)
                n = lib.llama_token_to_piece(self.vocab, token, buf, len(buf), 0, True)
            piece = buf.raw[:n]
            self._pieces[token] = piece
        return piece

    def is_eog(self, token: int) -> bool:
        return bool(lib.llama_vocab_is_eog(self.vocab, token))

    def free(self) -> None:
        if self.model:
            lib.llama_model_free(self.model)
            self.model = None
            self.vocab = None
