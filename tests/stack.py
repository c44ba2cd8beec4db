"""A real Herd for tests: redis-server, worker processes and a gateway process on free ports."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import httpx
import redis

from herd import protocol
from herd.demo import DEMO_NAME, write_demo_modelfile
from herd.processes import EmbeddedRedis, free_port, stop_process
from herd.protocol import Control
from herd.store.store import ModelStore

# A request that keeps a slot busy for longer than any test waits: greedy counting never
# samples end-of-text, where a story with sampling may end early on a fast machine.
ENDLESS: dict[str, object] = {"prompt": "1, 2, 3, 4, 5, 6,", "raw": True,
                              "options": {"num_predict": 4000, "temperature": 0}}


class Stack:
    def __init__(self, root: Path, redis_url: str, *, workers: int = 1, **settings: str | int) -> None:
        self.root = root
        self.models = root / "models"
        self.redis_url = redis_url
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.env = {
            **os.environ,
            "HERD_HOST": f"127.0.0.1:{self.port}",
            "HERD_MODELS": str(self.models),
            "HERD_REDIS_URL": redis_url,
            # Workers on one machine share its 2 cores (each spinning 2 OpenMP threads, two
            # decoding workers run several times slower than one alone).
            "HERD_NUM_THREAD": str(max(1, 2 // max(1, workers))),
            # A worker stopped at teardown with an answer left running (a test that killed its
            # gateway) would go on decoding beside the next tests for the default 30 s.
            "HERD_DRAIN_TIMEOUT": "2s",
            **{f"HERD_{k.upper()}": str(v) for k, v in settings.items()},
        }
        self.workers: list[subprocess.Popen[bytes]] = []
        self.gateway: subprocess.Popen[bytes] | None = None
        self._n_workers = workers

    def herd(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run the real `herd` CLI against this stack."""
        return subprocess.run([sys.executable, "-m", "herd", *args], env=self.env, capture_output=True,
                              text=True, check=check, timeout=120, stdin=subprocess.DEVNULL)  # never a pipe left open

    def bounded_model(self, num_predict: int = 48) -> str:
        """The demo model with this `num_predict`, created once: a one-shot `herd run` in a test
        then ends even when sampling degenerates (the demo sets no limit, which with context
        shifting means ten contexts: minutes)."""
        name = f"smollm2-bounded-{num_predict}:latest"
        modelfile = self.root / f"bounded-{num_predict}.Modelfile"
        if not modelfile.exists():
            modelfile.write_text(f"FROM {DEMO_NAME}\nPARAMETER num_predict {num_predict}\n")
            self.herd("create", name, "-f", str(modelfile))
        return name

    def _log(self, name: str) -> int:
        return os.open(self.root / f"{name}.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)

    def _spawn(self, module: str, name: str) -> subprocess.Popen[bytes]:
        fd = self._log(name)
        try:
            return subprocess.Popen([sys.executable, "-m", module], env=self.env, stdout=fd, stderr=fd)
        finally:
            os.close(fd)

    def add_worker(self) -> subprocess.Popen[bytes]:
        process = self._spawn("worker", f"worker{len(self.workers)}")
        self.workers.append(process)
        return process

    def start(self) -> Stack:
        self.models.mkdir(parents=True, exist_ok=True)
        self.herd("create", DEMO_NAME, "-f", str(write_demo_modelfile(self.root / "demo")))
        for _ in range(self._n_workers):
            self.add_worker()
        self.gateway = self._spawn("gateway", "gateway")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.gateway.poll() is not None:
                raise RuntimeError(f"gateway exited:\n{self.logs('gateway')}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(self.base_url + "/", timeout=1).status_code == 200:
                    return self
            time.sleep(0.1)
        raise RuntimeError(f"gateway did not start:\n{self.logs('gateway')}")

    def load_on_every_worker(self, model: str = DEMO_NAME, timeout: float = 120) -> str:
        """Have every worker of this Redis hold `model`: the first by a request, the others by the
        replica order the janitor sends when a queue stays deep. Returns the model's load digest."""
        httpx.post(self.base_url + "/api/generate", json={"model": model}, timeout=timeout).raise_for_status()
        record = ModelStore(self.models).get(model)
        assert record is not None
        digest, key = record.load_digest, protocol.holders_key(record.load_digest)
        db: Any = redis.Redis.from_url(self.redis_url)
        holding = {m.decode() for m in db.zrange(key, 0, -1)}
        for worker_id in {m.decode() for m in db.smembers(protocol.WORKERS_SET)} - holding:
            order = Control(kind="load", digest=digest, model=model)
            db.publish(protocol.control_channel(worker_id), protocol.encode(order))
        deadline = time.monotonic() + timeout
        while db.zcard(key) < db.scard(protocol.WORKERS_SET):
            if time.monotonic() > deadline:
                raise RuntimeError(f"not every worker loaded {model}")
            time.sleep(0.2)
        return digest

    def logs(self, name: str) -> str:
        path = self.root / f"{name}.log"
        return path.read_text(errors="replace")[-5000:] if path.exists() else ""

    def stop(self) -> None:
        # The gateway first, as `herd serve` does: its requests' jobs are cancelled as it goes, so
        # the workers have no answers left to finish (HERD_DRAIN_TIMEOUT) when they are stopped.
        for process in [*([self.gateway] if self.gateway else []), *self.workers]:
            stop_process(process)


@contextlib.contextmanager
def running_stack(root: Path, redis_url: str | None = None, *, workers: int = 1,
                  **settings: str | int) -> Iterator[Stack]:
    """A stack on its own Redis unless one is given; everything stopped afterwards."""
    with contextlib.ExitStack() as cleanup:
        if redis_url is None:
            redis_url = cleanup.enter_context(EmbeddedRedis()).url
        stack = Stack(root, redis_url, workers=workers, **settings)
        cleanup.callback(stack.stop)
        yield stack.start()


@contextlib.contextmanager
def gateway_pair(root: Path, *, workers: int = 1, second: dict[str, str | int] | None = None,
                 **settings: str | int) -> Iterator[tuple[Stack, Stack]]:
    """Two gateways on one Redis and one store: the first with `workers` workers and `settings`,
    the second with no worker of its own and `second`'s settings."""
    with running_stack(root, None, workers=workers, **settings) as first, \
            running_stack(root, first.redis_url, workers=0, **(second or {})) as other:
        yield first, other


class HeldStream:
    """A greedy counting stream (ENDLESS) whose first line has come: it holds a sequence until
    closed, or for `num_predict` tokens; `lines` gives the rest."""

    def __init__(self, base_url: str, headers: dict[str, str] | None = None, *, num_predict: int | None = None) -> None:
        self._client = httpx.Client(base_url=base_url, timeout=120, headers=headers)
        body: dict[str, Any] = {"model": DEMO_NAME, **ENDLESS}
        if num_predict is not None:
            body["options"] = {**cast(dict[str, object], ENDLESS["options"]), "num_predict": num_predict}
        self._context = self._client.stream("POST", "/api/generate", json=body)
        response = self._context.__enter__()
        assert response.status_code == 200, response.read()
        self.lines = response.iter_lines()  # kept: a dropped iterator closes the response
        next(self.lines)

    def close(self) -> None:
        self._context.__exit__(None, None, None)
        self._client.close()

