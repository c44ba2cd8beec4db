"""`herd serve`: the whole stack on one host, in the foreground.

A Redis (the one at HERD_REDIS_URL, else an embedded redis-server), HERD_WORKERS worker
processes, and the gateway in this process. Ctrl-C or SIGTERM stops all of it; a worker
that dies is restarted; children die with this process even if it is killed.
"""

from __future__ import annotations

import logging
import os
import subprocess
import threading
import time

from herd.config import Config
from herd.cpus import threads_per_worker
from herd.processes import EmbeddedRedis, python_module_command, spawn, stop_process

log = logging.getLogger("herd.serve")


class WorkerPool:
    """Keeps `count` worker processes alive until stopped."""

    def __init__(self, config: Config, redis_url: str, count: int) -> None:
        self._env = {**os.environ, **config.to_env(), "HERD_REDIS_URL": redis_url}
        if config.num_thread == 0:  # auto: the workers share this machine's cores
            self._env["HERD_NUM_THREAD"] = str(threads_per_worker(count))
        self._processes: list[subprocess.Popen[bytes]] = []
        self._count = count
        # SIGTERM lets a worker finish its answers (HERD_DRAIN_TIMEOUT): wait that long, and a bit.
        self._stop_wait_s = 15 + min(config.drain_timeout, 300.0)
        self._stopping = threading.Event()
        self._watcher = threading.Thread(target=self._watch, name="worker-watch", daemon=True)

    def start(self) -> None:
        self._processes = [self._spawn() for _ in range(self._count)]
        self._watcher.start()

    def _spawn(self) -> subprocess.Popen[bytes]:
        return spawn(python_module_command("worker"), env=self._env)

    def _watch(self) -> None:
        while not self._stopping.wait(1.0):
            for index, process in enumerate(self._processes):
                if process.poll() is not None and not self._stopping.is_set():
                    log.warning("worker %d exited with %s; restarting it", process.pid, process.returncode)
                    self._processes[index] = self._spawn()

    def stop(self) -> None:
        self._stopping.set()
        for process in self._processes:
            if process.poll() is None:
                process.terminate()
        deadline = time.monotonic() + self._stop_wait_s
        for process in self._processes:
            stop_process(process, timeout=max(0.1, deadline - time.monotonic()))


def serve(config: Config) -> None:
    from gateway.__main__ import run_gateway  # the gateway is imported only by the verbs that run it

    redis: EmbeddedRedis | None = None
    redis_url = config.redis_url
    if not redis_url:
        redis = EmbeddedRedis().start()
        redis_url = redis.url
        log.info("embedded redis-server on %s", redis_url)
    workers = WorkerPool(config, redis_url, config.workers)
    try:
        workers.start()
        log.info("herd listening on %s (%d worker(s), models in %s)", config.base_url, config.workers,
                 config.models)
        run_gateway(config, redis_url)
    finally:
        workers.stop()
        if redis is not None:
            redis.stop()
