"""A real registry for tests (Debian's `docker-registry`, the CNCF distribution server) and a
loopback TCP proxy that counts, cuts or corrupts what the registry sends back."""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import httpx

from herd.processes import free_port, stop_process

_CONFIG = """\
version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: {root}
  delete:
    enabled: true
http:
  addr: 127.0.0.1:{port}
  secret: herd-tests
"""


def registry_binary() -> str:
    found = shutil.which("docker-registry") or ("/usr/bin/docker-registry" if Path("/usr/bin/docker-registry").exists()
                                                 else None)
    if found is None:
        # Never a skip: CI installs it (scripts/test), and a registry test that did not run proves nothing.
        raise RuntimeError("docker-registry is not installed: `apt-get install docker-registry` "
                           "(scripts/test installs it when missing)")
    return found


class DockerRegistry:
    """A throwaway registry on a free loopback port, plain http, anonymous, storing in a temp dir."""

    def __init__(self) -> None:
        self.port = free_port()
        self._dir = tempfile.TemporaryDirectory(prefix="herd-registry-")
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout: float = 20.0) -> DockerRegistry:
        root = Path(self._dir.name)
        config = root / "config.yml"
        config.write_text(_CONFIG.format(root=root / "data", port=self.port))
        log = (root / "registry.log").open("wb")
        self._process = subprocess.Popen([registry_binary(), "serve", str(config)], stdout=log, stderr=log)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"docker-registry exited:\n{self.logs()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"http://{self.host}/v2/", timeout=1).status_code == 200:
                    return self
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"docker-registry did not answer on {self.host}:\n{self.logs()}")

    def logs(self) -> str:
        path = Path(self._dir.name) / "registry.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""

    def stop(self) -> None:
        if self._process is not None:
            stop_process(self._process)
            self._process = None
        self._dir.cleanup()

    def __enter__(self) -> DockerRegistry:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()


class Proxy:
    """Forwards loopback TCP to `upstream` and counts the bytes sent back to the client.

    `cut_after`: once that many bytes went back (over all connections), every connection is
    closed and new ones are refused: a network that went away mid-download. `flip_at`: the
    byte at that offset of each connection's answer stream is inverted (offsets past the
    small manifest/config answers land inside blob bodies).
    """

    def __init__(self, upstream_port: int, *, cut_after: int | None = None, flip_at: int | None = None) -> None:
        self.upstream_port = upstream_port
        self.cut_after = cut_after
        self.flip_at = flip_at
        self.sent = 0  # bytes from upstream to the client
        self.connections = 0
        self._lock = threading.Lock()
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._server.getsockname()[1])
        self._closed = threading.Event()
        self._sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def cut(self) -> bool:
        return self.cut_after is not None and self.sent >= self.cut_after

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            if self.cut:
                client.close()
                continue
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
            with self._lock:
                self.connections += 1
                self._sockets += [client, upstream]
            threading.Thread(target=self._pipe, args=(client, upstream, False), daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, client, True), daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket, answer: bool) -> None:
        offset = 0
        try:
            while data := source.recv(65536):
                if answer:
                    data = self._answer_bytes(data, offset)
                    offset += len(data)
                if data:
                    sink.sendall(data)
                if answer and self.cut:
                    break
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
            if answer and self.cut:
                self._close_all()

    def _answer_bytes(self, data: bytes, offset: int) -> bytes:
        with self._lock:
            if self.cut_after is not None:
                data = data[: max(0, self.cut_after - self.sent)]
            self.sent += len(data)
        if self.flip_at is not None and offset <= self.flip_at < offset + len(data):
            i = self.flip_at - offset
            data = data[:i] + bytes([data[i] ^ 0xFF]) + data[i + 1:]
        return data

    def _close_all(self) -> None:
        with self._lock:
            sockets, self._sockets = self._sockets, []
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def close(self) -> None:
        self._closed.set()
        self._server.close()
        self._close_all()

    def __enter__(self) -> Proxy:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()
