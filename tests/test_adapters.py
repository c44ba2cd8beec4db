"""LoRA adapters (Modelfile ADAPTER, /api/create `adapters`): stored as adapter layers, applied by
the worker with llama.cpp, and loaded apart from the plain base model."""

from __future__ import annotations

import hashlib
from pathlib import Path

import httpx
import msgspec
import ollama
import pytest

from herd.store.manifest import MEDIA_ADAPTER, Layer
from herd.store.store import ModelStore
from tests.stack import Stack
from tests.tiny_models import write_lora

# A raw prompt and greedy decoding: the output depends on the weights alone.
PROMPT = "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n"
GREEDY = {"temperature": 0, "num_predict": 16}


@pytest.fixture(scope="module")
def loras(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("loras")
    write_lora(folder / "lora.gguf")
    write_lora(folder / "zero.gguf", zero=True)
    write_lora(folder / "qwen.gguf", arch="qwen2")
    write_lora(folder / "narrow.gguf", n_embd=512)  # right architecture, wrong shapes
    return folder


@pytest.fixture(scope="module")
def http(herd: Stack) -> httpx.Client:
    return httpx.Client(base_url=herd.base_url, timeout=180)


def _generate(http: httpx.Client, model: str) -> str:
    reply = http.post("/api/generate", json={"model": model, "prompt": PROMPT, "raw": True, "stream": False,
                                             "options": GREEDY})
    assert reply.status_code == 200, reply.text
    text: str = reply.json()["response"]
    return text


def _upload(http: httpx.Client, path: Path) -> str:
    digest = "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()
    assert http.post(f"/api/blobs/{digest}", content=path.read_bytes()).status_code in (200, 201)
    return digest


def test_modelfile_adapter_changes_the_output_and_a_zero_adapter_does_not(
        herd: Stack, http: httpx.Client, loras: Path, model_name: str) -> None:
    for name, lora in (("smol-lora", "lora.gguf"), ("smol-zero", "zero.gguf")):
        (loras / f"{name}.Modelfile").write_text(f"FROM {model_name}\nADAPTER ./{lora}\n")
        out = herd.herd("create", name, "-f", str(loras / f"{name}.Modelfile")).stdout
        assert "success" in out
    try:
        base = _generate(http, model_name)
        adapted = _generate(http, "smol-lora")
        assert adapted != base  # the adapter is applied, and the base model's context is not shared
        assert _generate(http, "smol-zero") == base  # lora_b = 0: the same weights
        assert _generate(http, model_name) == base  # the plain model is still plain
        shown = http.post("/api/show", json={"model": "smol-lora"}).json()
        adapter_line = next(line for line in shown["modelfile"].splitlines() if line.startswith("ADAPTER "))
        digest = hashlib.sha256((loras / "lora.gguf").read_bytes()).hexdigest()
        assert adapter_line.endswith(f"sha256-{digest}")
        assert adapter_line in herd.herd("show", "smol-lora", "--modelfile").stdout
    finally:
        herd.herd("rm", "smol-lora", "smol-zero")


def test_api_create_with_adapters_map(herd: Stack, http: httpx.Client, loras: Path, model_name: str) -> None:
    digest = _upload(http, loras / "lora.gguf")
    done = ollama.Client(host=herd.base_url).create(model="api-lora", from_=model_name,
                                                    adapters={"lora.gguf": digest})
    assert done.status == "success"
    try:
        assert f"sha256-{digest[7:]}" in http.post("/api/show", json={"model": "api-lora"}).json()["modelfile"]
        assert _generate(http, "api-lora") != _generate(http, model_name)
    finally:
        http.request("DELETE", "/api/delete", json={"model": "api-lora"})


@pytest.mark.parametrize(("lora", "words"), [
    ("qwen.gguf", "the adapter is for architecture 'qwen2', the model is 'llama'"),
    ("narrow.gguf", "does not fit the model's 'blk.0.attn_q.weight'"),
])
def test_an_adapter_for_another_model_is_refused_at_create(
        herd: Stack, http: httpx.Client, loras: Path, model_name: str, lora: str, words: str) -> None:
    reply = http.post("/api/create", json={"model": "bad-lora", "from": model_name, "stream": False,
                                           "adapters": {lora: _upload(http, loras / lora)}})
    assert reply.status_code == 400 and words in reply.json()["error"]
    (loras / "bad.Modelfile").write_text(f"FROM {model_name}\nADAPTER ./{lora}\n")
    result = herd.herd("create", "bad-lora", "-f", str(loras / "bad.Modelfile"), check=False)
    assert result.returncode == 1 and words in result.stderr
    assert "bad-lora" not in herd.herd("list").stdout


def test_an_adapter_llama_cpp_refuses_fails_the_request_not_the_worker(
        herd: Stack, http: httpx.Client, loras: Path, model_name: str) -> None:
    """A store written by another tool may hold an adapter create would refuse: the load fails
    with a 500 in Ollama's shape, and the worker goes on serving."""
    store = ModelStore(herd.models)
    base = store.get(model_name)
    assert base is not None
    narrow = loras / "narrow.gguf"
    layer = Layer(media_type=MEDIA_ADAPTER, digest=store.add_blob(narrow), size=narrow.stat().st_size)
    manifest = msgspec.structs.replace(base.manifest, layers=[*base.manifest.layers, layer])
    path = herd.models / "manifests" / "registry.ollama.ai" / "library" / "broken-lora" / "latest"
    path.parent.mkdir(parents=True)
    path.write_bytes(msgspec.json.encode(manifest))
    try:
        reply = http.post("/api/generate", json={"model": "broken-lora", "prompt": "Hi", "stream": False})
        assert reply.status_code == 500
        assert "could not load the LoRA adapter" in reply.json()["error"]
        assert _generate(http, model_name)  # the worker survived
    finally:
        herd.herd("rm", "broken-lora")
