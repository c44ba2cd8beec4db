"""Fixtures that start real servers: redis-server, Herd's workers and gateway, on free ports."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from herd.demo import DEMO_NAME, demo_gguf
from herd.processes import EmbeddedRedis
from tests.registry import DockerRegistry
from tests.stack import Stack, running_stack


@pytest.fixture(scope="session")
def model_path() -> Path:
    return demo_gguf()


@pytest.fixture(scope="session")
def model_name() -> str:
    return DEMO_NAME


@pytest.fixture(scope="session")
def redis_server() -> Iterator[EmbeddedRedis]:
    with EmbeddedRedis() as server:
        yield server


@pytest.fixture(scope="session")
def herd(tmp_path_factory: pytest.TempPathFactory, redis_server: EmbeddedRedis) -> Iterator[Stack]:
    """The shared stack: one worker, NUM_PARALLEL 4, the demo model imported with `herd create`."""
    with running_stack(tmp_path_factory.mktemp("herd"), redis_server.url, num_parallel=4) as stack:
        yield stack


@pytest.fixture(scope="session")
def registry() -> Iterator[DockerRegistry]:
    """A real OCI registry (Debian's docker-registry) on a loopback port, plain http."""
    with DockerRegistry() as server:
        yield server
