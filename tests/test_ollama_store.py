"""An existing Ollama model store, written as Ollama writes it, is served unchanged end to end —
listed, shown and generated with through the gateway, its template, system prompt and
parameters honoured — from `OLLAMA_MODELS`; and the manifests Herd writes are Ollama's JSON."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from herd.demo import demo_gguf
from herd.processes import EmbeddedRedis
from tests.stack import Stack

CHATML = (Path(__file__).resolve().parent.parent / "herd" / "templates" / "chatml.gotmpl").read_text()
SYSTEM = "You are a pirate. Answer in a few words."
LICENSE = "Pirate License\nCopyright (c) the crew\nShare the loot fairly.\n"
# Go's json.Encoder: compact, <>& escaped, a trailing newline; map keys sorted.
PARAMS = b'{"num_predict":6,"stop":["\\u003c|im_start|\\u003e","\\u003c|im_end|\\u003e"],"temperature":0}\n'
CONFIG = (b'{"model_format":"gguf","model_family":"llama","model_families":["llama"],"model_type":"134.52M",'
          b'"file_type":"Q4_1","renderer":"","parser":"","architecture":"amd64","os":"linux",'
          b'"rootfs":{"type":"layers","diff_ids":[]}}\n')
EXPECTED_PROMPT = (f"<|im_start|>system\n{SYSTEM}<|im_end|>\n<|im_start|>user\nWho are you?<|im_end|>\n"
                   "<|im_start|>assistant\n")


def write_ollama_store(root: Path) -> Path:
    """One model, `pirate:latest`, in Ollama's layout: blobs named sha256-<hex>, the manifest
    under manifests/registry.ollama.ai/library/pirate/latest. Returns the manifest's path."""
    blobs = root / "blobs"
    blobs.mkdir(parents=True)

    def blob(data: bytes, media_type: str) -> dict[str, object]:
        hexdigest = hashlib.sha256(data).hexdigest()
        (blobs / f"sha256-{hexdigest}").write_bytes(data)
        return {"mediaType": media_type, "digest": f"sha256:{hexdigest}", "size": len(data)}

    layers = [
        blob(demo_gguf().read_bytes(), "application/vnd.ollama.image.model"),
        blob(CHATML.encode(), "application/vnd.ollama.image.template"),
        blob(SYSTEM.encode(), "application/vnd.ollama.image.system"),
        blob(LICENSE.encode(), "application/vnd.ollama.image.license"),
        blob(PARAMS, "application/vnd.ollama.image.params"),
    ]
    manifest = {"schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
                "config": blob(CONFIG, "application/vnd.docker.container.image.v1+json"), "layers": layers}
    path = root / "manifests" / "registry.ollama.ai" / "library" / "pirate" / "latest"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(manifest, separators=(",", ":")) + "\n")
    return path


@pytest.fixture(scope="module")
def ollama_stack(tmp_path_factory: pytest.TempPathFactory, redis_server: EmbeddedRedis) -> Iterator[Stack]:
    """A stack whose store is an Ollama store, named only by OLLAMA_MODELS (the setting alias)."""
    root = tmp_path_factory.mktemp("ollama-home")
    store = root / "ollama-models"
    write_ollama_store(store)
    stack = Stack(root, redis_server.url, num_parallel=2)
    del stack.env["HERD_MODELS"]
    stack.env["OLLAMA_MODELS"] = str(store)
    stack.models = store
    try:
        yield stack.start()
    finally:
        stack.stop()


@pytest.fixture(scope="module")
def http(ollama_stack: Stack) -> httpx.Client:
    return httpx.Client(base_url=ollama_stack.base_url, timeout=180)


def test_listed_by_the_api_and_the_cli(ollama_stack: Stack, http: httpx.Client) -> None:
    manifest = ollama_stack.models / "manifests" / "registry.ollama.ai" / "library" / "pirate" / "latest"
    listed = {m["name"]: m for m in http.get("/api/tags").json()["models"]}
    pirate = listed["pirate:latest"]
    assert pirate["digest"] == hashlib.sha256(manifest.read_bytes()).hexdigest()
    layers = json.loads(manifest.read_bytes())
    assert pirate["size"] == sum(layer["size"] for layer in layers["layers"]) + layers["config"]["size"]
    assert pirate["details"]["quantization_level"] == "Q4_1" and pirate["details"]["parameter_size"] == "134.52M"
    rows = [line.split() for line in ollama_stack.herd("list").stdout.splitlines()]
    assert ["pirate:latest", pirate["digest"][:12]] in [row[:2] for row in rows]


def test_shown_with_its_layers(ollama_stack: Stack, http: httpx.Client) -> None:
    shown = http.post("/api/show", json={"model": "pirate"}).json()
    assert shown["template"] == CHATML and shown["template_source"] == "modelfile"
    assert shown["system"] == SYSTEM and shown["license"] == LICENSE
    assert shown["parameters"].split() == ["num_predict", "6", "stop", '"<|im_start|>"', "stop", '"<|im_end|>"',
                                           "temperature", "0"]
    out = ollama_stack.herd("show", "pirate").stdout
    assert "  System\n    You are a pirate. Answer in a few words.    \n\n" in out
    assert ("  License\n    Pirate License            \n    Copyright (c) the crew    \n"
            "    ...                       \n") in out
    assert ollama_stack.herd("show", "pirate", "--license").stdout == LICENSE + "\n"


def test_generates_with_its_template_system_and_parameters(http: httpx.Client) -> None:
    chat = http.post("/api/chat", json={"model": "pirate", "stream": False,
                                        "messages": [{"role": "user", "content": "Who are you?"}]}).json()
    raw = http.post("/api/generate", json={"model": "pirate", "prompt": EXPECTED_PROMPT, "raw": True,
                                           "stream": False, "options": {"temperature": 0, "num_predict": 6}}).json()
    assert chat["prompt_eval_count"] == raw["prompt_eval_count"]  # the template and system, as Ollama renders
    assert chat["message"]["content"] == raw["response"]  # temperature 0 from the params layer
    assert chat["eval_count"] <= 6  # num_predict from the params layer


def test_serving_it_wrote_nothing_into_it(ollama_stack: Stack, tmp_path: Path) -> None:
    reference = write_ollama_store(tmp_path / "fresh")
    served = ollama_stack.models / "manifests" / "registry.ollama.ai" / "library" / "pirate" / "latest"
    assert served.read_bytes() == reference.read_bytes()
    for layer in json.loads(reference.read_bytes())["layers"]:
        name = layer["digest"].replace(":", "-")
        assert (ollama_stack.models / "blobs" / name).stat().st_size == layer["size"]


def test_manifests_herd_writes_are_ollamas_json(ollama_stack: Stack) -> None:
    """The demo model, created by `herd create` at start: byte for byte what Go's json.Encoder
    writes for Ollama's Manifest struct (field order, no spaces, trailing newline)."""
    path = ollama_stack.models / "manifests" / "registry.ollama.ai" / "library" / "smollm2" / "135m"
    data = path.read_bytes()
    manifest = json.loads(data)
    assert list(manifest) == ["schemaVersion", "mediaType", "config", "layers"]
    assert manifest["schemaVersion"] == 2
    assert manifest["mediaType"] == "application/vnd.docker.distribution.manifest.v2+json"
    assert manifest["config"]["mediaType"] == "application/vnd.docker.container.image.v1+json"
    for layer in [manifest["config"], *manifest["layers"]]:
        assert list(layer)[:3] == ["mediaType", "digest", "size"] and set(layer) <= {
            "mediaType", "digest", "size", "from", "name"}
        blob = ollama_stack.models / "blobs" / layer["digest"].replace(":", "-")
        assert hashlib.sha256(blob.read_bytes()).hexdigest() == layer["digest"][7:]
    assert data == (json.dumps(manifest, separators=(",", ":")) + "\n").encode()
    assert [layer["mediaType"].rsplit(".", 1)[1] for layer in manifest["layers"]] == [
        "model", "template", "system", "params"]
