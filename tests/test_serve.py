"""`herd serve` as a user runs it: embedded Redis, workers, gateway; and a clean stop."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from herd.cpus import threads_per_worker
from herd.demo import DEMO_NAME, write_demo_modelfile
from herd.processes import free_port


def _children(pid: int) -> set[int]:
    """Every descendant of `pid`, from /proc."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
    found: set[int] = set()
    frontier = {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    return state != "Z"


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT])
def test_serve_starts_everything_and_stops_it_all(tmp_path: Path, stop_signal: signal.Signals) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HERD_", "OLLAMA_"))}
    env |= {"HERD_HOST": f"127.0.0.1:{port}", "HERD_MODELS": str(tmp_path / "models"), "HERD_WORKERS": "2"}
    subprocess.run([sys.executable, "-m", "herd", "create", DEMO_NAME, "-f",
                    str(write_demo_modelfile(tmp_path / "demo"))], env=env, check=True, capture_output=True)
    serve = subprocess.Popen([sys.executable, "-m", "herd", "serve"], env=env, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while True:
            with contextlib.suppress(httpx.HTTPError):
                body = {"model": DEMO_NAME, "prompt": "Hi", "stream": False, "options": {"num_predict": 2}}
                if httpx.post(f"http://127.0.0.1:{port}/api/generate", json=body, timeout=30).status_code == 200:
                    break
            assert time.monotonic() < deadline, "herd serve did not answer"
            time.sleep(0.2)
        children = _children(serve.pid)
        names = [Path(f"/proc/{c}/cmdline").read_bytes().replace(b"\0", b" ").decode() for c in children]
        assert any("redis-server" in n for n in names)
        workers = [c for c, n in zip(children, names, strict=True) if "-m worker" in n]
        assert len(workers) == 2
        # NUM_THREAD auto: the two workers share the machine's cores rather than each taking all.
        for worker in workers:
            environ = Path(f"/proc/{worker}/environ").read_bytes().split(b"\0")
            assert f"HERD_NUM_THREAD={threads_per_worker(2)}".encode() in environ
        serve.send_signal(stop_signal)
        assert serve.wait(30) in (0, -stop_signal, 128 + stop_signal)
        deadline = time.monotonic() + 10
        while any(_alive(c) for c in children) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not [c for c in children if _alive(c)], "orphans left behind"
    finally:
        if serve.poll() is None:
            serve.kill()


def test_gateway_imports_without_llama_cpp() -> None:
    """The gateway (and the CLI) must install and run where llama-cpp-python is absent."""
    code = "import sys; sys.modules['llama_cpp'] = None; import gateway.app, herd.cli, herd.serve; print('ok')"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
