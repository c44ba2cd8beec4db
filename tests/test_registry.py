"""Pull and push against a real registry (docker-registry), store to store, no gateway in between:
parallel ranged parts, resuming a cut download, a corrupted blob, pruning, http only when insecure,
and the Bearer token dance."""

from __future__ import annotations

import asyncio
import hashlib
import json
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from herd.demo import demo_gguf
from herd.registry import (
    BlobCorrupt,
    InsecureProtocol,
    Progress,
    RegistryClient,
    RegistryError,
    Tuning,
    pull_model,
    push_model,
)
from herd.store.modelfile import Modelfile
from herd.store.names import parse_name
from herd.store.store import ModelStore
from tests.registry import DockerRegistry, Proxy

QUICK = Tuning(retries=2, backoff=0.05)  # a cut network fails in well under a second


class Statuses(list[Progress]):
    def __call__(self, item: Progress) -> None:
        self.append(item)

    def names(self) -> list[str]:
        """Each status once, in order of first appearance."""
        return list(dict.fromkeys(p.status for p in self))


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> ModelStore:
    return ModelStore(tmp_path_factory.mktemp("source"))


@pytest.fixture(scope="module")
def pushed(source: ModelStore, registry: DockerRegistry) -> str:
    """The demo model, created in `source` and pushed once; its name in the registry."""
    name = f"{registry.host}/team/smol:v1"
    source.create(name, Modelfile(from_=str(demo_gguf())), base_dir=Path("/"))
    return name


def _partials(store: ModelStore) -> list[str]:
    return sorted(p.name for p in store.blobs_dir.glob("*partial*")) if store.blobs_dir.exists() else []


async def test_push_then_pull_into_a_fresh_store(source: ModelStore, pushed: str, registry: DockerRegistry,
                                                 tmp_path: Path) -> None:
    statuses = Statuses()
    await push_model(source, pushed, emit=statuses, insecure=True)
    record = source.get(pushed)
    assert record is not None
    short = record.weights_digest[:12]
    assert statuses.names()[0] == "retrieving manifest"
    assert statuses.names()[-2:] == ["pushing manifest", "success"]
    weights = [p for p in statuses if p.status == f"pushing {short}"]
    assert weights[-1].completed == weights[-1].total == record.weights_path.stat().st_size

    fresh = ModelStore(tmp_path / "fresh")
    statuses = Statuses()
    with Proxy(registry.port) as proxy:
        name = pushed.replace(registry.host, proxy.host)
        written = await pull_model(fresh, name, emit=statuses, insecure=True)
    layers = [f"pulling {layer.digest[7:19]}" for layer in record.manifest.layers]
    config = record.manifest.config.digest[7:19]
    assert short in layers[0] and len(layers) == 3  # weights, template, system (herd.demo)
    assert statuses.names() == ["pulling manifest", *layers, f"pulling {config}",
                                "verifying sha256 digest", "writing manifest", "success"]
    last = [p for p in statuses if p.digest == f"sha256:{record.weights_digest}"][-1]
    assert last.completed == last.total == record.weights_path.stat().st_size
    assert proxy.connections >= 4  # the weights came in several ranged parts at once
    copy = fresh.get(written)
    assert copy is not None and copy.weights_digest == record.weights_digest
    assert copy.manifest_path.read_bytes() == record.manifest_path.read_bytes()  # same digest in /api/tags
    assert fresh.verify_blob(f"sha256:{copy.weights_digest}")
    assert _partials(fresh) == []

    again = Statuses()  # everything is here already: nothing is downloaded
    with Proxy(registry.port) as proxy:
        await pull_model(fresh, pushed.replace(registry.host, proxy.host), emit=again, insecure=True)
    assert proxy.sent < 10_000 and again.names()[-1] == "success"


async def test_an_interrupted_pull_resumes_where_it_stopped(source: ModelStore, pushed: str,
                                                            registry: DockerRegistry, tmp_path: Path) -> None:
    await push_model(source, pushed, emit=Statuses(), insecure=True)
    size = demo_gguf().stat().st_size
    store = ModelStore(tmp_path / "store")
    with Proxy(registry.port, cut_after=40_000_000) as proxy, pytest.raises(RegistryError, match="max retries"):
        await pull_model(store, pushed.replace(registry.host, proxy.host), emit=Statuses(), insecure=True,
                         tuning=QUICK)
    assert store.list() == []  # no manifest before every blob is in
    parts = [json.loads(p.read_text()) for p in store.blobs_dir.glob("sha256-*-partial-*")]
    kept = sum(part["Completed"] for part in parts)
    assert set(parts[0]) == {"N", "Offset", "Size", "Completed"}  # Ollama's own part files
    assert 20_000_000 < kept <= 40_000_000

    statuses = Statuses()
    with Proxy(registry.port) as proxy:  # another port, so another name: the blobs are what matter
        written = await pull_model(store, pushed.replace(registry.host, proxy.host), emit=statuses, insecure=True)
    assert statuses.names()[-1] == "success"
    # Only the rest came down: the bytes kept, less a little (answer headers, the config).
    assert size - kept < proxy.sent < size - kept + 100_000
    record = store.get(written)
    assert record is not None and store.verify_blob(f"sha256:{record.weights_digest}")
    assert _partials(store) == []


async def test_a_cancelled_pull_keeps_its_bytes_for_the_next(source: ModelStore, pushed: str,
                                                              registry: DockerRegistry, tmp_path: Path) -> None:
    """What happens when an /api/pull client goes away: the task is cancelled mid-download."""
    await push_model(source, pushed, emit=Statuses(), insecure=True)
    size = demo_gguf().stat().st_size
    store = ModelStore(tmp_path / "store")
    pulling: asyncio.Task[object] | None = None

    def emit(item: Progress) -> None:  # cancel once 30 MB are in (the proxy stalls at 50 MB)
        if item.total == size and item.completed >= 30_000_000 and pulling is not None:
            pulling.cancel()

    with Proxy(registry.port, cut_after=50_000_000) as proxy:
        pulling = asyncio.create_task(pull_model(store, pushed.replace(registry.host, proxy.host), emit=emit,
                                                 insecure=True,
                                                 # a save after every write: the cancel lands mid-save
                                                 tuning=Tuning(retries=1000, backoff=0.05, checkpoint=1)))
        with pytest.raises(asyncio.CancelledError):
            await pulling
    kept = sum(json.loads(p.read_text())["Completed"] for p in store.blobs_dir.glob("sha256-*-partial-*"))
    assert 30_000_000 <= kept <= 50_000_000
    with Proxy(registry.port) as proxy:
        await pull_model(store, pushed.replace(registry.host, proxy.host), emit=Statuses(), insecure=True)
    assert size - kept < proxy.sent < size - kept + 100_000


async def test_a_corrupted_blob_is_an_error_and_is_not_kept(source: ModelStore, pushed: str,
                                                            registry: DockerRegistry, tmp_path: Path) -> None:
    await push_model(source, pushed, emit=Statuses(), insecure=True)
    store = ModelStore(tmp_path / "store")
    statuses = Statuses()
    with Proxy(registry.port, flip_at=200_000) as proxy, pytest.raises(BlobCorrupt) as caught:
        await pull_model(store, pushed.replace(registry.host, proxy.host), emit=statuses, insecure=True)
    assert str(caught.value).startswith("digest mismatch, file must be downloaded again: want sha256:")
    assert "verifying sha256 digest" in statuses.names() and "success" not in statuses.names()
    weights = source.get(pushed)
    assert weights is not None
    assert not store.blob_path(f"sha256:{weights.weights_digest}").exists()
    assert _partials(store) == [] and store.list() == []  # the config blob, intact, is kept for next time


async def test_an_unknown_model_is_ollamas_error(registry: DockerRegistry, tmp_path: Path) -> None:
    statuses = Statuses()
    with pytest.raises(RegistryError) as caught:
        await pull_model(ModelStore(tmp_path), f"{registry.host}/team/nothing-here", emit=statuses, insecure=True)
    assert str(caught.value) == "pull model manifest: file does not exist"
    assert statuses.names() == ["pulling manifest"]


async def test_pull_prunes_the_layers_a_changed_tag_no_longer_uses(source: ModelStore, registry: DockerRegistry,
                                                                   tmp_path: Path) -> None:
    name = f"{registry.host}/team/prune:latest"
    dest = ModelStore(tmp_path / "dest")

    async def publish_and_pull(system: str, *, prune: bool = True) -> Statuses:
        source.create(name, Modelfile(from_=str(demo_gguf()), system=system), base_dir=Path("/"))
        await push_model(source, name, emit=Statuses(), insecure=True)
        statuses = Statuses()
        await pull_model(dest, name, emit=statuses, insecure=True, prune=prune)
        return statuses

    def system_blob(text: str) -> Path:
        return dest.blob_path("sha256:" + hashlib.sha256(text.encode()).hexdigest())

    await publish_and_pull("one")
    dest.copy(name, "keeper")  # another model that uses the "one" layer
    statuses = await publish_and_pull("two")
    assert system_blob("one").exists() and "removing unused layers" not in statuses.names()
    statuses = await publish_and_pull("three")
    assert statuses.names()[-2:] == ["removing unused layers", "success"]
    assert not system_blob("two").exists() and system_blob("three").exists()
    record = dest.get(name)
    assert record is not None and record.system == "three" and record.weights_path.exists()
    await publish_and_pull("four", prune=False)  # HERD_NOPRUNE
    assert system_blob("three").exists() and system_blob("four").exists()


async def test_plain_http_only_when_insecure(pushed: str, registry: DockerRegistry, tmp_path: Path) -> None:
    store = ModelStore(tmp_path)
    with pytest.raises(RegistryError) as caught:  # https to a plain-http registry fails
        await pull_model(store, pushed, emit=Statuses(), insecure=False)
    assert "https://" in str(caught.value)
    with pytest.raises(InsecureProtocol, match="insecure protocol http"):
        await pull_model(store, f"http://{pushed}", emit=Statuses())


class _TokenRegistry(BaseHTTPRequestHandler):
    """A registry endpoint that wants a Bearer token from its realm (the distribution token spec)."""

    manifest = b""
    scopes: list[str] = []  # noqa: RUF012 - shared on purpose: the test reads what the realm was asked

    def log_message(self, *_: object) -> None:
        pass

    def do_GET(self) -> None:
        if self.path.startswith("/token?"):
            self.scopes.append(self.path)
            self._send(200, json.dumps({"token": "t0ken"}).encode())
        elif self.headers.get("Authorization") != "Bearer t0ken":
            assert isinstance(self.server, ThreadingHTTPServer)  # an AF_INET address: (host, port)
            realm = f"http://127.0.0.1:{self.server.server_address[1]}/token"
            self._send(401, b'{"errors":[{"code":"UNAUTHORIZED"}]}', {
                "WWW-Authenticate": f'Bearer realm="{realm}",service="test",scope="repository:team/m:pull"'})
        else:
            self._send(200, self.manifest)

    def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def token_registry() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _TokenRegistry)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


async def test_bearer_token_dance(token_registry: str) -> None:
    _TokenRegistry.manifest = b'{"schemaVersion":2}'
    _TokenRegistry.scopes.clear()
    async with RegistryClient(parse_name(f"{token_registry}/team/m:v1"), insecure=True) as client:
        assert await client.get_manifest("v1") == b'{"schemaVersion":2}'
        await client.get_manifest("v1")  # the token is kept: no second round
    assert _TokenRegistry.scopes == ["/token?service=test&scope=repository%3Ateam%2Fm%3Apull"]


PULL_IN_ANOTHER_PROCESS = """
import asyncio, sys
from herd.registry import pull_model
from herd.store.store import ModelStore
asyncio.run(pull_model(ModelStore(sys.argv[1]), sys.argv[2], emit=lambda _: None, insecure=True))
"""


async def test_two_processes_pulling_into_one_store_both_succeed(source: ModelStore, pushed: str,
                                                                 tmp_path: Path) -> None:
    """Gateways on several hosts may share one store (NFS): a pull waits for another process's
    download of the same blob, then finds it in place."""
    await push_model(source, pushed, emit=Statuses(), insecure=True)  # no-op when pushed already
    store = tmp_path / "shared"
    pulls = [await asyncio.create_subprocess_exec(sys.executable, "-c", PULL_IN_ANOTHER_PROCESS, str(store), pushed,
                                                  stderr=asyncio.subprocess.PIPE) for _ in range(2)]
    results = [(await p.wait(), (await p.stderr.read()).decode()[-600:]) for p in pulls if p.stderr]
    assert [code for code, _ in results] == [0, 0], results
    copy = ModelStore(store).get(pushed)
    assert copy is not None and ModelStore(store).verify_blob(f"sha256:{copy.weights_digest}")
    assert _partials(ModelStore(store)) == []
    assert not list(ModelStore(store).blobs_dir.glob(".*"))  # the lock files went with the pull
