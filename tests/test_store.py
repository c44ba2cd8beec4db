"""The model store keeps Ollama's layout, shares and collects blobs, and never leaves its root."""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import shutil
from pathlib import Path

import pytest

from herd.store.modelfile import parse_modelfile
from herd.store.names import InvalidDigest, InvalidModelName
from herd.store.store import (
    CorruptModel,
    DigestMismatch,
    ModelNotFound,
    ModelStore,
    StoreError,
    UnsafePath,
)
from tests.gguf_writer import STRING, U32, gguf_bytes


def tiny_gguf(path: Path, *, arch: str = "llama", file_type: int = 15, rows: int = 4) -> Path:
    """A valid GGUF file: two KV pairs and one F32 tensor of 32 x rows."""
    path.write_bytes(gguf_bytes([("general.architecture", STRING, arch), ("general.file_type", U32, file_type)],
                                [("w", (32, rows), 0)]))
    return path


@pytest.fixture
def store(tmp_path: Path) -> ModelStore:
    return ModelStore(tmp_path / "models")


@pytest.fixture
def gguf(tmp_path: Path) -> Path:
    return tiny_gguf(tmp_path / "tiny.gguf")


def blobs(store: ModelStore) -> set[str]:
    return {p.name for p in store.blobs_dir.iterdir()} if store.blobs_dir.exists() else set()


def create(store: ModelStore, name: str, text: str, base_dir: Path) -> None:
    store.create(name, parse_modelfile(text), base_dir=base_dir)


def test_create_from_gguf_writes_ollamas_layout(store: ModelStore, gguf: Path, tmp_path: Path) -> None:
    record = store.create("tiny:1b", parse_modelfile(
        "FROM ./tiny.gguf\nTEMPLATE {{ .Prompt }}\nSYSTEM Be brief.\nPARAMETER temperature 0.7\n"
        "PARAMETER stop <|im_end|>\nLICENSE MIT\nMESSAGE user hi\nMESSAGE assistant hello\n"), base_dir=tmp_path)

    manifest_path = store.root / "manifests/registry.ollama.ai/library/tiny/1b"
    manifest = json.loads(manifest_path.read_bytes())
    assert manifest["schemaVersion"] == 2
    assert manifest["mediaType"] == "application/vnd.docker.distribution.manifest.v2+json"
    assert manifest["config"]["mediaType"] == "application/vnd.docker.container.image.v1+json"
    assert [layer["mediaType"].rsplit(".", 1)[1] for layer in manifest["layers"]] == [
        "model", "template", "system", "license", "params", "messages"]
    for layer in [manifest["config"], *manifest["layers"]]:
        blob = store.root / "blobs" / layer["digest"].replace(":", "-")
        assert hashlib.sha256(blob.read_bytes()).hexdigest() == layer["digest"].split(":")[1]
        assert blob.stat().st_size == layer["size"]

    config_blob = store.root / "blobs" / manifest["config"]["digest"].replace(":", "-")
    assert json.loads(config_blob.read_bytes()) == {
        "model_format": "gguf", "model_family": "llama", "model_families": ["llama"], "model_type": "128",
        "file_type": "Q4_K_M", "architecture": "amd64", "os": "linux"}
    # Go's json.Encoder escapes < and >; matching it byte for byte keeps digests equal to Ollama's.
    params_blob = store.blob_path(record.manifest.layers[4].digest).read_bytes()
    assert params_blob == b'{"stop":["\\u003c|im_end|\\u003e"],"temperature":0.7}\n'

    assert record.name.display() == "tiny:1b"
    assert record.weights_path.read_bytes() == gguf.read_bytes()
    assert record.weights_digest == hashlib.sha256(gguf.read_bytes()).hexdigest()
    assert record.manifest_digest == hashlib.sha256(manifest_path.read_bytes()).hexdigest()
    assert record.template == "{{ .Prompt }}" and record.system == "Be brief."
    assert record.parameters == {"temperature": 0.7, "stop": ["<|im_end|>"]}
    assert record.messages == [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]
    assert record.licenses == ["MIT"]
    assert record.size == sum(layer["size"] for layer in manifest["layers"]) + manifest["config"]["size"]
    assert record.details.family == "llama" and record.details.quantization_level == "Q4_K_M"
    assert record.details.parent_model == "" and record.details.format == "gguf"


def test_list_and_get_find_models_case_insensitively(store: ModelStore, gguf: Path, tmp_path: Path) -> None:
    create(store, "Me/Tiny:Q4", "FROM tiny.gguf", tmp_path)
    create(store, "other", "FROM tiny.gguf", tmp_path)
    assert [r.name.display() for r in store.list()] == ["Me/Tiny:Q4", "other:latest"]
    found = store.get("me/tiny:q4")
    assert found is not None and found.name.model == "Tiny"
    assert store.get("missing") is None
    create(store, "ME/TINY:q4", "FROM tiny.gguf\nSYSTEM replaced", tmp_path)  # same model, its case kept
    assert [r.name.display() for r in store.list()] == ["Me/Tiny:Q4", "other:latest"]
    replaced = store.get("me/tiny:Q4")
    assert replaced is not None and replaced.system == "replaced"


def test_identical_weights_are_stored_once(store: ModelStore, gguf: Path, tmp_path: Path) -> None:
    create(store, "a", "FROM tiny.gguf", tmp_path)
    record = store.get("a")
    assert record is not None
    inode = record.weights_path.stat().st_ino
    create(store, "b", f"FROM {gguf}\nSYSTEM b", tmp_path)
    b = store.get("b")
    assert b is not None and b.weights_path == record.weights_path
    assert b.weights_path.stat().st_ino == inode  # not rewritten
    assert store.add_blob(gguf) == f"sha256:{record.weights_digest}"


def test_deleting_a_model_keeps_blobs_another_model_uses(store: ModelStore, gguf: Path, tmp_path: Path) -> None:
    create(store, "a", "FROM tiny.gguf\nSYSTEM only a", tmp_path)
    create(store, "b", "FROM tiny.gguf\nSYSTEM only b", tmp_path)
    a, b = store.get("a"), store.get("b")
    assert a is not None and b is not None
    a_system = {layer.digest.replace(":", "-") for layer in a.manifest.layers if "system" in layer.media_type}
    store.delete("a")
    assert store.get("a") is None
    assert b.weights_path.exists() and store.get("b") is not None
    assert not a_system & blobs(store)
    store.delete("B")  # names match case-insensitively here too
    assert not [n for n in blobs(store) if n.startswith("sha256-")]
    assert list(store.manifests_dir.iterdir()) == []  # empty directories are removed
    with pytest.raises(ModelNotFound):
        store.delete("b")


def test_create_from_a_model_inherits_and_overrides(store: ModelStore, gguf: Path, tmp_path: Path) -> None:
    create(store, "base", "FROM tiny.gguf\nSYSTEM base\nTEMPLATE T\nPARAMETER top_k 10\nPARAMETER seed 1\n"
                          "LICENSE L1\nMESSAGE user x", tmp_path)
    child = store.create("child", parse_modelfile("FROM base\nSYSTEM child\nPARAMETER seed 2\nLICENSE L2\n"))
    base = store.get("base")
    assert base is not None
    assert child.weights_path == base.weights_path
    assert child.details.parent_model == "base:latest"
    assert child.template == "T" and child.system == "child"
    assert child.parameters == {"top_k": 10, "seed": 2}
    assert child.licenses == ["L1", "L2"] and child.messages == [{"role": "user", "content": "x"}]
    assert child.details.family == "llama"
    store.delete("base")
    assert store.get("child") is not None


def test_copy_shares_the_manifest_bytes(store: ModelStore, gguf: Path, tmp_path: Path) -> None:
    create(store, "a", "FROM tiny.gguf\nSYSTEM s", tmp_path)
    copied = store.copy("a", "ns/b:v2")
    original = store.get("a")
    assert original is not None
    assert copied.manifest_digest == original.manifest_digest
    assert copied.name.display() == "ns/b:v2"
    store.delete("a")
    after = store.get("ns/b:v2")
    assert after is not None and after.system == "s"
    with pytest.raises(ModelNotFound):
        store.copy("a", "c")


def test_from_errors_are_clear(store: ModelStore, gguf: Path, tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / "dir").mkdir()
    cases = {
        "FROM ./missing.gguf": "no such file",
        "FROM notes.txt": "not a GGUF file",
        "FROM dir": "is a directory",
        "FROM ../x/../../etc": "no such file",
        "FROM a:b:c": "not a file or a valid model name",
        "FROM tiny.gguf\nADAPTER ./nope.gguf": "ADAPTER ./nope.gguf: no such file",
    }
    for text, message in cases.items():
        with pytest.raises(StoreError, match=message):
            create(store, "m", text, tmp_path)
    with pytest.raises(ModelNotFound, match='model "ghost" not found'):
        create(store, "m", "FROM ghost", tmp_path)
    with pytest.raises(InvalidModelName):
        create(store, "../evil", "FROM tiny.gguf", tmp_path)
    assert store.list() == []


def test_without_base_dir_only_names_and_uploaded_blobs_are_used(store: ModelStore, gguf: Path) -> None:
    with pytest.raises(StoreError):
        store.create("m", parse_modelfile(f"FROM {gguf}"))  # no access to server paths
    digest = store.add_blob(io.BytesIO(gguf.read_bytes()))
    record = store.create("m", parse_modelfile(f"FROM {digest}"))
    assert record.weights_digest == digest.split(":")[1]
    with pytest.raises(StoreError, match="no such blob"):
        store.create("m", parse_modelfile("FROM sha256:" + "0" * 64))


def lora_header(path: Path, *, arch: str = "llama", kind: str = "adapter") -> Path:
    """A GGUF with a LoRA adapter's header (the tensors' data does not matter to the store)."""
    path.write_bytes(gguf_bytes([("general.architecture", STRING, arch), ("general.type", STRING, kind),
                                 ("adapter.type", STRING, "lora")], [("w.lora_a", (32, 1), 0)]))
    return path


def test_adapters_become_adapter_layers(store: ModelStore, gguf: Path, tmp_path: Path) -> None:
    lora_header(tmp_path / "lora.gguf")
    record = store.create("m", parse_modelfile("FROM tiny.gguf\nADAPTER lora.gguf"), base_dir=tmp_path)
    assert [p.read_bytes() for p in record.adapters] == [(tmp_path / "lora.gguf").read_bytes()]
    assert record.adapter_digests == [hashlib.sha256((tmp_path / "lora.gguf").read_bytes()).hexdigest()]
    assert f"ADAPTER {record.adapters[0]}" in record.modelfile()
    # The model with an adapter is loaded apart from its base model; the plain model keeps its weights' key.
    assert record.load_digest not in (record.weights_digest, record.adapter_digests[0])
    plain = store.create("plain", parse_modelfile("FROM tiny.gguf"), base_dir=tmp_path)
    assert plain.load_digest == plain.weights_digest and plain.load_target() == {"digest": plain.weights_digest}


@pytest.mark.parametrize(("header", "words"), [
    ({"arch": "qwen2"}, "architecture 'qwen2'"),
    ({"kind": "model"}, "not a LoRA adapter"),
])
def test_adapters_for_another_model_are_refused(store: ModelStore, gguf: Path, tmp_path: Path,
                                                header: dict[str, str], words: str) -> None:
    lora_header(tmp_path / "lora.gguf", **header)
    with pytest.raises(StoreError, match=words):
        store.create("m", parse_modelfile("FROM tiny.gguf\nADAPTER lora.gguf"), base_dir=tmp_path)
    assert store.list() == []


def test_an_adapter_is_not_a_model(store: ModelStore, tmp_path: Path) -> None:
    lora_header(tmp_path / "lora.gguf")
    with pytest.raises(StoreError, match="is a LoRA adapter"):
        store.create("m", parse_modelfile("FROM lora.gguf"), base_dir=tmp_path)


def test_modelfile_text_rebuilds_the_same_model(store: ModelStore, gguf: Path, tmp_path: Path) -> None:
    create(store, "m", 'FROM tiny.gguf\nSYSTEM """two\nlines"""\nPARAMETER stop A\nPARAMETER stop B\n', tmp_path)
    record = store.get("m")
    assert record is not None
    text = record.modelfile()
    assert text.startswith('# Modelfile generated by "herd show"\n')
    assert f"FROM {record.weights_path}\n" in text
    again = store.create("again", parse_modelfile(text), base_dir=tmp_path)
    assert (again.system, again.parameters, again.weights_digest) == (
        record.system, record.parameters, record.weights_digest)


def test_blobs_are_content_addressed_and_verified(store: ModelStore) -> None:
    data = b"hello"
    digest = store.add_blob(data)
    assert digest == "sha256:" + hashlib.sha256(data).hexdigest()
    assert store.has_blob(digest) and store.verify_blob(digest)
    assert store.add_blob(io.BytesIO(data), digest=digest) == digest
    with pytest.raises(DigestMismatch):
        store.add_blob(b"other", digest=digest)
    with pytest.raises(DigestMismatch):
        store.add_blob(io.BytesIO(b"other"), digest="sha256:" + "1" * 64)
    assert not store.has_blob("sha256:" + "1" * 64)
    store.blob_path(digest).write_bytes(b"jello")  # bit rot
    assert not store.verify_blob(digest)
    assert not store.verify_blob("sha256:" + "2" * 64)
    assert sorted(blobs(store)) == [f"sha256-{digest[7:]}"]  # no temporary files left behind


@pytest.mark.parametrize("digest", ["sha256:../x", "sha256:" + "a" * 63, "sha256:" + "a" * 65, "../../etc/passwd"])
def test_malformed_digests_never_become_paths(store: ModelStore, digest: str) -> None:
    with pytest.raises(InvalidDigest):
        store.blob_path(digest)
    with pytest.raises(InvalidDigest):
        store.has_blob(digest)


def test_names_that_escape_are_refused(store: ModelStore) -> None:
    for name in ["../../etc/passwd", "..", "/etc/passwd", "a\x00b"]:
        with pytest.raises(InvalidModelName):
            store.get(name)


def test_symlinks_out_of_the_store_are_refused(
    store: ModelStore, gguf: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    create(store, "good", "FROM tiny.gguf", tmp_path)
    create(store, "victim", "FROM tiny.gguf\nSYSTEM secret-layer", tmp_path)
    victim = store.get("victim")
    assert victim is not None
    system = next(layer for layer in victim.manifest.layers if layer.media_type.endswith("system"))
    outside = tmp_path / "outside.txt"
    outside.write_text("secret-layer")
    blob = store.blob_path(system.digest)
    blob.unlink()
    blob.symlink_to(outside)
    with pytest.raises(UnsafePath):
        store.blob_path(system.digest)
    with pytest.raises(UnsafePath):
        store.get("victim")

    (tmp_path / "elsewhere").mkdir()
    (store.manifests_dir / "registry.ollama.ai" / "evil").symlink_to(tmp_path / "elsewhere")
    (tmp_path / "elsewhere" / "m").mkdir()
    (tmp_path / "elsewhere" / "m" / "latest").write_bytes(victim.manifest_path.read_bytes())
    with caplog.at_level(logging.WARNING):
        assert [r.name.display() for r in store.list()] == ["good:latest"]
    with pytest.raises(UnsafePath):
        store.get("evil/m")


def test_a_symlinked_blobs_directory_is_allowed(tmp_path: Path, gguf: Path) -> None:
    (tmp_path / "disk2").mkdir()
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "blobs").symlink_to(tmp_path / "disk2")
    store = ModelStore(tmp_path / "models")
    record = store.create("m", parse_modelfile("FROM tiny.gguf"), base_dir=tmp_path)
    assert (tmp_path / "disk2" / f"sha256-{record.weights_digest}").is_file()


def _ollama_store(root: Path, gguf: Path) -> dict[str, str]:
    """Write a store the way Ollama does (manifest bytes, blob names, Go JSON escapes)."""
    (root / "blobs").mkdir(parents=True)
    digests: dict[str, str] = {}

    def blob(kind: str, data: bytes) -> dict[str, object]:
        hexdigest = hashlib.sha256(data).hexdigest()
        (root / "blobs" / f"sha256-{hexdigest}").write_bytes(data)
        digests[kind] = hexdigest
        return {"digest": f"sha256:{hexdigest}", "size": len(data)}

    config = blob("config", b'{"model_format":"gguf","model_family":"llama","model_families":["llama"],'
                            b'"model_type":"134.52M","file_type":"Q4_1","renderer":"","architecture":"amd64",'
                            b'"os":"linux","rootfs":{"type":"layers","diff_ids":[]}}\n')
    layers = [
        {"mediaType": "application/vnd.ollama.image.model", **blob("model", gguf.read_bytes())},
        {"mediaType": "application/vnd.ollama.image.template",
         **blob("template", b"{{- range .Messages }}<|im_start|>{{ .Role }}\n{{ .Content }}<|im_end|>\n{{ end }}")},
        {"mediaType": "application/vnd.ollama.image.system", **blob("system", b"You are helpful.")},
        {"mediaType": "application/vnd.ollama.image.license", **blob("license", b"Apache License 2.0")},
        {"mediaType": "application/vnd.ollama.image.params",
         **blob("params", b'{"stop":["\\u003c|im_start|\\u003e","\\u003c|im_end|\\u003e"],"temperature":0.2}\n')},
        {"mediaType": "application/vnd.ollama.image.future-thing", **blob("future", b"?")},
    ]
    manifest = {"schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
                "config": {"mediaType": "application/vnd.docker.container.image.v1+json", **config},
                "layers": layers}
    path = root / "manifests" / "registry.ollama.ai" / "library" / "smollm2" / "135m"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(manifest, separators=(",", ":")))
    os.utime(path, (1_700_000_000, 1_700_000_000))
    return digests


def test_a_store_written_by_ollama_is_served_unchanged(tmp_path: Path, gguf: Path) -> None:
    root = tmp_path / "ollama"
    digests = _ollama_store(root, gguf)
    before = {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}
    store = ModelStore(root)
    [record] = store.list()
    assert record.name.display() == "smollm2:135m"
    assert store.get("SmolLM2:135M") == record
    assert record.weights_digest == digests["model"]
    assert record.template is not None and record.template.startswith("{{- range .Messages }}")
    assert record.system == "You are helpful." and record.licenses == ["Apache License 2.0"]
    assert record.parameters == {"stop": ["<|im_start|>", "<|im_end|>"], "temperature": 0.2}
    assert record.details.parameter_size == "134.52M" and record.details.quantization_level == "Q4_1"
    assert record.modified_at.timestamp() == 1_700_000_000 and record.modified_at.tzinfo is not None
    manifest_file = root / "manifests/registry.ollama.ai/library/smollm2/135m"
    assert record.manifest_digest == hashlib.sha256(manifest_file.read_bytes()).hexdigest()
    assert {p: p.read_bytes() for p in root.rglob("*") if p.is_file()} == before  # reading wrote nothing


def test_broken_manifests_are_skipped_by_list_and_reported_by_get(
    tmp_path: Path, gguf: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = tmp_path / "ollama"
    digests = _ollama_store(root, gguf)
    store = ModelStore(root)
    good = root / "manifests/registry.ollama.ai/library/smollm2/135m"
    library = good.parent.parent

    def variant(name: str, data: bytes) -> None:
        (library / name).mkdir()
        (library / name / "latest").write_bytes(data)

    manifest = json.loads(good.read_bytes())
    variant("garbage", b"{not json")
    variant("wrongtype", json.dumps({**manifest, "layers": "nope"}).encode())
    manifest["layers"][2]["size"] += 1
    variant("badsize", json.dumps(manifest).encode())
    manifest["layers"][2]["size"] -= 1
    manifest["layers"][2]["digest"] = "sha256:../../../../etc/passwd"
    variant("traversal", json.dumps(manifest).encode())
    manifest["layers"][2]["digest"] = "sha256:" + "f" * 64
    variant("missingblob", json.dumps(manifest).encode())
    manifest["layers"][2]["digest"] = "sha256:" + digests["system"]
    manifest["layers"] = [layer for layer in manifest["layers"] if not layer["mediaType"].endswith("model")]
    variant("noweights", json.dumps(manifest).encode())
    variant("huge", b" " * (2 << 20))
    (library / "badtag").mkdir()
    (library / "badtag" / "-rf").write_bytes(good.read_bytes())  # not a valid tag: never a name
    (good.parent / ".herd-0123-partial").write_bytes(b"half a manifest")  # a crashed write

    with caplog.at_level(logging.WARNING):
        assert [r.name.display() for r in store.list()] == ["smollm2:135m"]
    assert "skipping model garbage:latest" in caplog.text
    assert "ignoring manifest" in caplog.text and "-rf" in caplog.text
    for name, message in [("garbage", "JSON"), ("wrongtype", "Expected `array`"), ("badsize", "manifest says"),
                          ("traversal", "invalid digest"), ("missingblob", "is missing"),
                          ("noweights", "no model layer"), ("huge", "larger than")]:
        with pytest.raises(CorruptModel, match=message):
            store.get(name)
    store.delete("traversal")  # a broken model can still be deleted
    assert (root / "blobs" / f"sha256-{digests['system']}").exists()  # still used by smollm2


def test_writes_are_atomic_and_leave_no_temporary_files(store: ModelStore, gguf: Path, tmp_path: Path) -> None:
    create(store, "a", "FROM tiny.gguf\nSYSTEM one", tmp_path)
    manifest = store.manifest_path(store.list()[0].name)
    inode = manifest.stat().st_ino
    create(store, "a", "FROM tiny.gguf\nSYSTEM two", tmp_path)
    assert manifest.stat().st_ino != inode  # replaced by rename, never rewritten in place
    leftovers = [p for p in store.root.rglob("*") if p.name.startswith(".herd-") and p.name != ".herd-lock"]
    assert leftovers == []
    record = store.get("a")
    assert record is not None and record.system == "two"
    # The replaced system layer is collected; the weights are still there.
    assert len([n for n in blobs(store) if n.startswith("sha256-")]) == 3


def test_a_failed_copy_into_the_store_leaves_nothing(store: ModelStore, tmp_path: Path) -> None:
    class Exploding(io.RawIOBase):
        def __init__(self) -> None:
            self.calls = 0

        def readable(self) -> bool:
            return True

        def read(self, size: int = -1) -> bytes:
            self.calls += 1
            if self.calls > 2:
                raise OSError("disk went away")
            return b"x" * 10

    with pytest.raises(OSError, match="disk went away"):
        store.add_blob(Exploding())  # type: ignore[arg-type]
    assert blobs(store) == set()


def test_a_name_looked_up_again_sees_every_change(store: ModelStore, gguf: Path, tmp_path: Path) -> None:
    """get() remembers each name's record and checks it with a stat per call: a replaced model,
    a deleted one, a blob gone, or a manifest moved out of the store behind a symlink all show."""
    create(store, "m", "FROM tiny.gguf\nSYSTEM first", tmp_path)
    first = store.get("m")
    assert first is not None and first.system == "first"
    assert store.get("m") is first  # remembered

    create(store, "m", "FROM tiny.gguf\nSYSTEM second", tmp_path)
    second = store.get("m")
    assert second is not None and second.system == "second"

    system = next(layer for layer in second.manifest.layers if layer.media_type.endswith("system"))
    store.blob_path(system.digest).unlink()
    with pytest.raises(CorruptModel):
        store.get("m")

    create(store, "m", "FROM tiny.gguf\nSYSTEM third", tmp_path)
    third = store.get("m")
    assert third is not None and store.get("m") is third
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "latest").write_bytes(third.manifest_path.read_bytes())
    manifest_dir = third.manifest_path.parent
    shutil.rmtree(manifest_dir)
    manifest_dir.symlink_to(outside)
    with pytest.raises(UnsafePath):
        store.get("m")

    manifest_dir.unlink()
    assert store.get("m") is None
