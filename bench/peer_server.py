"""llama-cpp-python's own OpenAI-compatible server (`python -m llama_cpp.server`), the peer
Herd is compared with.

Run as `python -m bench.peer_server ARGS...` it is that server, unchanged, except for one
patch made before the server's modules are imported: `llama_model_default_params()` returns
params with `use_extra_bufts` as Herd's worker sets it (off on CPUs with AMX). The server
loads its model through the high-level `Llama` class, which calls that function; without the
patch llama.cpp's AMX kernels crash on the first decode on CPUs with AMX.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib.util
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parent.parent
# What `llama-cpp-python[server]` adds. Install them by name, so that pip keeps the
# llama-cpp-python that is already built rather than building it again:
#   scripts/install bench   (the `bench` extra in pyproject.toml)
SERVER_MODULES = ("fastapi", "pydantic_settings", "starlette_context", "sse_starlette", "uvicorn")


def missing_modules() -> list[str]:
    return [name for name in SERVER_MODULES if importlib.util.find_spec(name) is None]


def _die_with_parent() -> None:
    """In the child: SIGTERM when the benchmark dies, however it dies."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _patch_default_params() -> None:
    import llama_cpp.llama_cpp as bindings

    original: Callable[[], Any] = bindings.llama_model_default_params

    from worker.llama_model import extra_buffer_types_safe

    def as_herd_loads() -> Any:
        params = original()
        params.use_extra_bufts = extra_buffer_types_safe()
        return params

    bindings.llama_model_default_params = as_herd_loads


def main() -> None:
    _patch_default_params()
    from llama_cpp.server.__main__ import main as server_main

    server_main()  # type: ignore[no-untyped-call]


@dataclass(frozen=True)
class Peer:
    base_url: str
    pid: int


@contextlib.contextmanager
def running_peer(model_path: str, *, port: int, alias: str, n_threads: int, n_ctx: int,
                 flash_attn: bool, log_path: Path) -> Iterator[Peer]:
    """The peer server on 127.0.0.1:port until the block ends."""
    if missing := missing_modules():
        raise RuntimeError(f"llama-cpp-python's server needs {', '.join(missing)}: see bench/peer_server.py")
    args = [
        sys.executable, "-m", "bench.peer_server",
        "--model", model_path,
        "--model_alias", alias,
        "--host", "127.0.0.1",
        "--port", str(port),
        "--n_threads", str(n_threads),
        "--n_threads_batch", str(n_threads),
        "--n_ctx", str(n_ctx),
        "--n_batch", "512",
        "--n_ubatch", "512",
        "--flash_attn", str(flash_attn),
        "--logits_all", "False",  # its default computes logits for every prompt token
        "--verbose", "False",
    ]
    base_url = f"http://127.0.0.1:{port}"
    with open(log_path, "ab") as log:
        process = subprocess.Popen(args, cwd=REPO, stdout=log, stderr=log, env={**os.environ, "PYTHONPATH": str(REPO)},
                                   preexec_fn=_die_with_parent)
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"the peer server exited ({process.returncode}); see {log_path}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(base_url + "/v1/models", timeout=1).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(f"the peer server did not start; see {log_path}")
            time.sleep(0.2)
        yield Peer(base_url, process.pid)
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


if __name__ == "__main__":
    main()
