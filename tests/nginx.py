"""A real nginx for tests (Debian's package) running the shipped site config of deploy/nginx/,
with its gateway addresses and port rewritten to loopback ones."""

from __future__ import annotations

import contextlib
import getpass
import re
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from herd.processes import free_port, stop_process

DEPLOY_NGINX = Path(__file__).resolve().parent.parent / "deploy" / "nginx"

# Everything outside the site config: pids, logs and temp files in a temp dir. The access log
# names the gateway that answered each request, so a test can see the balancing.
_MAIN = """\
daemon off;
master_process on;
worker_processes 1;
user {user};
pid {root}/nginx.pid;
error_log {root}/error.log info;
events {{ worker_connections 1024; }}
http {{
    client_body_temp_path {root}/body;
    proxy_temp_path {root}/proxy;
    fastcgi_temp_path {root}/fastcgi;
    uwsgi_temp_path {root}/uwsgi;
    scgi_temp_path {root}/scgi;
    log_format upstreams '$request_method $uri $status $upstream_addr';
    access_log {root}/access.log upstreams;
    include {root}/site.conf;
}}
"""


def nginx_binary() -> str:
    found = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
    if found is None:
        # Never a skip: scripts/test installs it, and a deploy test that did not run proves nothing.
        raise RuntimeError("nginx is not installed: `apt-get install nginx` (scripts/test installs it when missing)")
    return found


def site_config(gateways: list[str], port: int) -> str:
    """deploy/nginx/herd.conf with its `server` lines pointing at `gateways` and listening on `port`."""
    text = (DEPLOY_NGINX / "herd.conf").read_text()
    shipped = re.findall(r"^(\s*)server\s+\S+:\d+(.*;)$", text, flags=re.MULTILINE)
    if len(shipped) != len(gateways):
        raise ValueError(f"herd.conf lists {len(shipped)} gateways, the test has {len(gateways)}")
    addresses = iter(gateways)
    text = re.sub(r"^(\s*)server\s+\S+:\d+(.*;)$", lambda m: f"{m[1]}server {next(addresses)}{m[2]}", text,
                  flags=re.MULTILINE)
    text, listens = re.subn(r"^(\s*)listen\s+\d+;$", rf"\g<1>listen 127.0.0.1:{port};", text, flags=re.MULTILINE)
    if listens != 1:
        raise ValueError("herd.conf should have one `listen <port>;`")
    return text


class Nginx:
    """nginx in the foreground on a free loopback port, in front of `gateways` (host:port)."""

    def __init__(self, gateways: list[str]) -> None:
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self._dir = tempfile.TemporaryDirectory(prefix="herd-nginx-")
        self.root = Path(self._dir.name)
        self._gateways = gateways
        self._process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 20.0) -> Nginx:
        # site.conf says `include herd/proxy.conf;`, relative to the main config's directory, as
        # in the nginx image where deploy/nginx/ is mounted at /etc/nginx/herd.
        (self.root / "herd").symlink_to(DEPLOY_NGINX, target_is_directory=True)
        (self.root / "site.conf").write_text(site_config(self._gateways, self.port))
        config = self.root / "nginx.conf"
        config.write_text(_MAIN.format(root=self.root, user=getpass.getuser()))
        command = [nginx_binary(), "-p", str(self.root), "-e", str(self.root / "error.log"), "-c", str(config)]
        checked = subprocess.run([*command, "-t"], capture_output=True, text=True)
        if checked.returncode != 0:
            raise RuntimeError(f"nginx -t rejected the config:\n{checked.stderr}")
        self._process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"nginx exited:\n{self.error_log()}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), 0.2):
                return self
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"nginx did not listen on {self.port}:\n{self.error_log()}")

    def access_log(self) -> list[tuple[str, str, int, str]]:
        """(method, uri, status, upstream address(es)) per request, in order."""
        path = self.root / "access.log"
        rows = []
        for line in path.read_text().splitlines() if path.exists() else []:
            method, uri, status, upstream = line.split(" ", 3)
            rows.append((method, uri, int(status), upstream))
        return rows

    def error_log(self) -> str:
        path = self.root / "error.log"
        return path.read_text(errors="replace")[-5000:] if path.exists() else ""

    def stop(self) -> None:
        if self._process is not None:
            stop_process(self._process)  # SIGTERM: nginx's fast shutdown
            self._process = None
        self._dir.cleanup()

    def __enter__(self) -> Nginx:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()
