"""`/api/create` with `quantize` (and `herd create -q`): llama.cpp's quantizer turns an F16 model
into a new, smaller blob of the asked type, with Ollama's progress lines and error texts."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import httpx
import ollama
import pytest

from herd.store.gguf import read_gguf
from herd.store.modelfile import parse_modelfile
from herd.store.progress import Progress
from herd.store.quantize import QuantizeError, parse_quantization
from herd.store.store import ModelStore, StoreError
from tests.stack import Stack
from tests.tiny_models import write_lora, write_tiny_llama

ZERO_DIGEST = "0000000000000000000"


@pytest.fixture(scope="module")
def f16(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_llama(tmp_path_factory.mktemp("f16") / "tiny-f16.gguf")


@pytest.fixture(scope="module")
def http(herd: Stack) -> httpx.Client:
    return httpx.Client(base_url=herd.base_url, timeout=120)


def _upload(http: httpx.Client, path: Path) -> str:
    import hashlib

    digest = "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()
    if http.head(f"/api/blobs/{digest}").status_code != 200:
        assert http.post(f"/api/blobs/{digest}", content=path.read_bytes()).status_code == 201
    return digest


@pytest.mark.parametrize(("given", "canonical"), [
    ("q4_K_M", "Q4_K_M"), ("Q4_K_M", "Q4_K_M"), ("q4_k", "Q4_K_M"), ("q8_0", "Q8_0"), ("q4_0", "Q4_0"),
    ("Q6_K", "Q6_K"), ("f16", "F16"),
])
def test_quantization_names_are_case_insensitive(given: str, canonical: str) -> None:
    assert parse_quantization(given) == canonical


def test_an_unknown_quantization_gets_ollamas_error() -> None:
    with pytest.raises(QuantizeError, match=r"^unsupported quantization type q3_xx - supported types are F32, F16, "):
        parse_quantization("q3_xx")


def test_store_quantizes_f16_into_a_new_blob(f16: Path, tmp_path: Path) -> None:
    store = ModelStore(tmp_path / "models")
    progress: list[Progress] = []
    record = store.create("tiny:q8", parse_modelfile(f"FROM {f16}"), base_dir=tmp_path, quantize="q8_0",
                          progress=progress.append)
    info = read_gguf(record.weights_path)
    assert info.file_type == "Q8_0" and record.details.quantization_level == "Q8_0"
    assert {t.type_name for t in info.tensors if len(t.shape) == 2} == {"Q8_0"}  # 1-d norms stay F32
    assert record.weights_path.stat().st_size < f16.stat().st_size / 1.7
    assert record.details.parameter_size == read_gguf(f16).parameter_size
    statuses = [p.status for p in progress]
    weights = f"sha256:{record.weights_digest}"
    assert statuses == [
        "parsing GGUF", "quantizing F16 model to Q8_0", "quantizing F16 model to Q8_0", "verifying conversion",
        f"creating new layer {weights}", "using autodetected template chatml",
        f"creating new layer {record.manifest.layers[2].digest}", "writing manifest",
    ]
    bar = progress[1:3]
    assert [(p.digest, p.completed) for p in bar] == [(ZERO_DIGEST, 0), (ZERO_DIGEST, f16.stat().st_size)]
    assert not [p for p in store.blobs_dir.iterdir() if p.name.startswith(".")]  # no temporary file left
    # Asking for the type the model already has writes nothing new.
    same = store.create("tiny:f16", parse_modelfile(f"FROM {f16}"), base_dir=tmp_path, quantize="F16")
    assert same.weights_path.read_bytes() == f16.read_bytes()


def test_quantizing_an_already_quantized_model_is_refused(f16: Path, tmp_path: Path) -> None:
    store = ModelStore(tmp_path / "models")
    store.create("tiny:q4", parse_modelfile(f"FROM {f16}"), base_dir=tmp_path, quantize="q4_0")
    with pytest.raises(QuantizeError, match=r"^quantization is only supported for F16 and F32 models$"):
        store.create("again", parse_modelfile("FROM tiny:q4"), quantize="q8_0")


def test_without_llama_cpp_quantizing_is_a_clear_error(f16: Path, tmp_path: Path) -> None:
    """A gateway-only host has no llama-cpp-python: the store says what to install."""
    code = (
        "import sys; sys.modules['llama_cpp'] = None\n"
        "from pathlib import Path\n"
        "from herd.store.modelfile import parse_modelfile\n"
        "from herd.store.store import ModelStore\n"
        "from herd.store.quantize import QuantizerUnavailable\n"
        "try:\n"
        f"    ModelStore(Path({str(tmp_path / 'models')!r})).create('m', parse_modelfile('FROM {f16}'),\n"
        f"        base_dir=Path({str(tmp_path)!r}), quantize='q8_0')\n"
        "except QuantizerUnavailable as exc:\n"
        "    print(exc)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert "needs llama-cpp-python" in result.stdout


def test_api_create_quantizes_streams_progress_and_the_model_runs(http: httpx.Client, f16: Path) -> None:
    digest = _upload(http, f16)
    with http.stream("POST", "/api/create", json={"model": "tiny-q4km", "files": {"tiny.gguf": digest},
                                                  "quantize": "q4_K_M"}) as response:
        assert response.status_code == 200
        lines = [json.loads(line) for line in response.iter_lines() if line]
    statuses = [line["status"] for line in lines]
    assert statuses[0] == "parsing GGUF" and statuses[-2:] == ["writing manifest", "success"]
    bar = [line for line in lines if line["status"] == "quantizing F16 model to Q4_K_M"]
    assert bar and all(line["digest"] == ZERO_DIGEST and line["total"] == f16.stat().st_size for line in bar)
    assert "verifying conversion" in statuses and "using autodetected template chatml" in statuses
    shown = http.post("/api/show", json={"model": "tiny-q4km"}).json()
    assert shown["details"]["quantization_level"] == "Q4_K_M" and shown["details"]["family"] == "llama"
    listed = next(m for m in http.get("/api/tags").json()["models"] if m["name"] == "tiny-q4km:latest")
    assert listed["details"]["quantization_level"] == "Q4_K_M" and listed["size"] < f16.stat().st_size
    # llama.cpp loads what its quantizer wrote (random weights: only that it answers matters).
    reply = http.post("/api/generate", json={"model": "tiny-q4km", "prompt": "Hi", "stream": False,
                                             "options": {"num_predict": 3, "temperature": 0}})
    assert reply.status_code == 200 and reply.json()["done"] is True
    http.request("DELETE", "/api/delete", json={"model": "tiny-q4km"})


def test_api_create_quantize_without_streaming(http: httpx.Client, f16: Path) -> None:
    digest = _upload(http, f16)
    reply = http.post("/api/create", json={"model": "tiny-q40", "files": {"tiny.gguf": digest},
                                           "quantize": "Q4_0", "stream": False})
    assert reply.json() == {"status": "success"}
    assert http.post("/api/show", json={"model": "tiny-q40"}).json()["details"]["quantization_level"] == "Q4_0"
    http.request("DELETE", "/api/delete", json={"model": "tiny-q40"})


def test_ollama_client_create_with_quantize(herd: Stack, http: httpx.Client, f16: Path) -> None:
    client = ollama.Client(host=herd.base_url)
    digest = _upload(http, f16)
    progress = list(client.create(model="tiny-client", files={"tiny.gguf": digest}, quantize="q8_0", stream=True))
    assert progress[-1].status == "success"
    assert any(p.status == "quantizing F16 model to Q8_0" and p.total for p in progress)
    assert client.show("tiny-client").details.quantization_level == "Q8_0"  # type: ignore[union-attr]
    with pytest.raises(ollama.ResponseError) as caught:
        client.create(model="nope", from_="tiny-client", quantize="q4_0")
    assert caught.value.status_code == 400 and "only supported for F16 and F32" in caught.value.error
    client.delete("tiny-client")


@pytest.mark.parametrize(("body", "text"), [
    ({"from": "smollm2:135m", "quantize": "q4_K_M"}, "quantization is only supported for F16 and F32 models"),
    ({"from": "smollm2:135m", "quantize": "q9_9"}, "unsupported quantization type q9_9 - supported types are"),
])
def test_api_quantize_errors_are_400s_in_ollamas_shape(http: httpx.Client, body: dict[str, str], text: str) -> None:
    for stream in (True, False):
        reply = http.post("/api/create", json={"model": "nope", **body, "stream": stream})
        assert reply.status_code == 400
        assert text in reply.json()["error"]


def test_cli_create_quantize_flag(herd: Stack, f16: Path, tmp_path: Path) -> None:
    modelfile = tmp_path / "Modelfile"
    modelfile.write_text(f"FROM {f16}\n")
    out = herd.herd("create", "tiny-cli", "-q", "q8_0", "-f", str(modelfile)).stdout
    assert "quantizing F16 model to Q8_0" in out and "verifying conversion" in out and "success" in out
    assert out.count("quantizing F16 model to Q8_0") == 1  # one line per status, not per update
    assert "quantization        Q8_0" in herd.herd("show", "tiny-cli").stdout
    herd.herd("rm", "tiny-cli")


def test_cli_create_quantize_without_a_server(f16: Path, tmp_path: Path) -> None:
    """No server running: `herd create -q` quantizes straight into the local store."""
    import os

    from herd.processes import free_port

    modelfile = tmp_path / "Modelfile"
    modelfile.write_text(f"FROM {f16}\n")
    env = {**os.environ, "HERD_HOST": f"127.0.0.1:{free_port()}", "HERD_MODELS": str(tmp_path / "models")}
    result = subprocess.run([sys.executable, "-m", "herd", "create", "local", "-q", "Q4_0", "-f", str(modelfile)],
                            env=env, capture_output=True, text=True, timeout=120, check=True)
    assert result.stdout.count("quantizing F16 model to Q4_0") == 1 and "success: created local:latest" in result.stdout
    record = ModelStore(tmp_path / "models").get("local")
    assert record is not None and record.details.quantization_level == "Q4_0"


def test_a_failed_create_with_quantize_leaves_no_quantized_blob(f16: Path, tmp_path: Path) -> None:
    """A bad ADAPTER is refused before any quantizing, and nothing new stays in the store."""
    store = ModelStore(tmp_path / "models")
    store.create("base", parse_modelfile(f"FROM {f16}"), base_dir=tmp_path)
    blobs = sorted(p.name for p in store.blobs_dir.iterdir())
    wrong = write_lora(tmp_path / "for-another-model.gguf", n_embd=576)  # SmolLM2's width, not tiny's
    progress: list[Progress] = []
    with pytest.raises(StoreError, match="ADAPTER"):
        store.create("tiny:q8", parse_modelfile(f"FROM base\nADAPTER {wrong}"), base_dir=tmp_path,
                     quantize="q8_0", progress=progress.append)
    assert not [p for p in progress if p.status.startswith("quantizing")]
    assert sorted(p.name for p in store.blobs_dir.iterdir()) == blobs
