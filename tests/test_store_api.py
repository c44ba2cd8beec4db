"""Store operations over HTTP and the CLI: blobs, create (Ollama's JSON form), copy."""

from __future__ import annotations

import hashlib
from pathlib import Path

import httpx
import ollama
import pytest

from tests.stack import Stack
from tests.test_scheduling import variant_gguf


@pytest.fixture(scope="module")
def http(herd: Stack) -> httpx.Client:
    return httpx.Client(base_url=herd.base_url, timeout=120)


def test_blob_upload_is_verified(http: httpx.Client, herd: Stack) -> None:
    data = b"a small blob for the test\n"
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    assert http.head(f"/api/blobs/{digest}").status_code == 404
    wrong = "sha256:" + hashlib.sha256(b"other").hexdigest()
    refused = http.post(f"/api/blobs/{wrong}", content=data)
    assert refused.status_code == 400 and "digest" in refused.json()["error"]
    assert not (herd.models / "blobs" / f"sha256-{wrong[7:]}").exists()
    assert http.post(f"/api/blobs/{digest}", content=data).status_code == 201
    assert http.head(f"/api/blobs/{digest}").status_code == 200
    assert http.post(f"/api/blobs/{digest}", content=data).status_code == 200
    assert (herd.models / "blobs" / f"sha256-{digest[7:]}").read_bytes() == data
    assert http.head("/api/blobs/sha256:../../etc/passwd").status_code in (400, 404)
    assert http.post("/api/blobs/sha256:abc", content=data).status_code == 400


def test_create_from_files_and_from_a_model(http: httpx.Client, herd: Stack) -> None:
    from herd.store.store import ModelStore

    record = ModelStore(herd.models).get("smollm2:135m")
    assert record is not None
    digest = f"sha256:{record.weights_digest}"
    assert http.head(f"/api/blobs/{digest}").status_code == 200
    with http.stream("POST", "/api/create", json={
        "model": "fromfiles", "files": {"model.gguf": digest}, "system": "Be brief.",
        "parameters": {"temperature": 0.3, "stop": ["END"]},
    }) as response:
        statuses = [line for line in response.iter_lines() if line]
    assert statuses[-1] == '{"status":"success"}'
    shown = http.post("/api/show", json={"model": "fromfiles"}).json()
    assert shown["system"] == "Be brief." and "temperature" in shown["parameters"]
    derived = http.post("/api/create", json={"model": "derived:v1", "from": "fromfiles", "stream": False,
                                             "template": "{{ .Prompt }}"})
    assert derived.json() == {"status": "success"}
    shown = http.post("/api/show", json={"model": "derived:v1"}).json()
    assert shown["system"] == "Be brief." and shown["template"] == "{{ .Prompt }}"
    for name in ("fromfiles", "derived:v1"):
        assert http.request("DELETE", "/api/delete", json={"model": name}).status_code == 200


@pytest.mark.parametrize(("body", "status", "word"), [
    ({"model": "x", "from": "smollm2:135m", "parameters": {"top_k": "many"}}, 400, "top_k"),
    ({"model": "x", "from": "smollm2:135m", "parameters": {"bogus": 1}}, 400, "bogus"),
    ({"model": "x", "from": "no-such-model"}, 404, "not found"),
    ({"model": "../x", "from": "smollm2:135m"}, 400, "model"),
    ({"model": "x"}, 400, "from"),
    ({"model": "x", "files": {"m.gguf": "sha256:123"}}, 400, "sha256"),
    ({"model": "x", "from": "smollm2:135m", "quantize": "q4_K_M"}, 400, "only supported for F16 and F32"),
])
def test_bad_create_requests(http: httpx.Client, body: dict[str, object], status: int, word: str) -> None:
    response = http.post("/api/create", json={**body, "stream": False})
    assert response.status_code == status
    assert word in response.json()["error"]


def test_copy_through_the_ollama_client(herd: Stack) -> None:
    client = ollama.Client(host=herd.base_url)
    client.copy("smollm2:135m", "copied:latest")
    assert "copied:latest" in [m.model for m in client.list().models]
    client.delete("copied:latest")
    with pytest.raises(ollama.ResponseError) as caught:
        client.copy("no-such-model", "whatever")
    assert caught.value.status_code == 404


def test_ollama_client_create(herd: Stack) -> None:
    client = ollama.Client(host=herd.base_url)
    progress = list(client.create(model="made-by-client", from_="smollm2:135m", system="Say yes.", stream=True))
    assert progress[-1].status == "success"
    assert "SYSTEM Say yes." in (client.show("made-by-client").modelfile or "")
    client.delete("made-by-client")


def test_cli_create_uploads_a_new_gguf_and_cp(herd: Stack, tmp_path: Path) -> None:
    modelfile = tmp_path / "Modelfile"
    modelfile.write_text(f"FROM ./{variant_gguf(tmp_path).name}\nPARAMETER num_ctx 2048\n")
    out = herd.herd("create", "uploaded", "-f", str(modelfile)).stdout
    assert "copying file sha256:" in out and "success" in out
    assert "copied 'uploaded' to 'uploaded2'" in herd.herd("cp", "uploaded", "uploaded2").stdout
    reply = httpx.post(herd.base_url + "/api/generate", timeout=120,
                       json={"model": "uploaded2", "prompt": "Hi", "stream": False, "options": {"num_predict": 2}})
    assert reply.json()["done"] is True
    herd.herd("rm", "uploaded", "uploaded2")
