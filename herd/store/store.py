"""The model store, in Ollama's on-disk layout so an existing Ollama store is served as is.

    <root>/manifests/<host>/<namespace>/<model>/<tag>   JSON manifest, schemaVersion 2
    <root>/blobs/sha256-<hex>                           content-addressed layers and config

Names and digests are validated before they become paths, and every path is resolved and
checked to stay inside `manifests/` or `blobs/` (a symlink pointing elsewhere is refused).
Writes go to a temporary file that is fsynced and renamed, so a crash never leaves a half
manifest or blob under its final name. Mutations that add or remove manifests take an flock on
`<root>/.herd-lock` so a concurrent delete cannot collect a blob a create is about to reference.

Blobs, path checks and atomic writes are in `herd.store.blobs`; the manifest format is in
`herd.store.manifest`.
"""

from __future__ import annotations

import builtins
import contextlib
import dataclasses
import datetime as dt
import fcntl
import glob
import hashlib
import json
import logging
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

import msgspec

from herd.protocol import load_key
from herd.store.blobs import (
    BlobStore,
    CorruptModel,
    DigestMismatch,
    StoreError,
    UnsafePath,
    atomic_write,
    contained,
    read_capped,
)
from herd.store.create_steps import (
    autodetect_template,
    check_adapter,
    gguf_kind,
    quantize_weights,
    read_checked,
)
from herd.store.gguf import GGUFInfo
from herd.store.manifest import (
    MEDIA_ADAPTER,
    MEDIA_CONFIG,
    MEDIA_LICENSE,
    MEDIA_MESSAGES,
    MEDIA_MODEL,
    MEDIA_PARAMS,
    MEDIA_PROJECTOR,
    MEDIA_SYSTEM,
    MEDIA_TEMPLATE,
    Layer,
    Manifest,
    ModelConfig,
    go_json,
)
from herd.store.modelfile import Modelfile, render_modelfile
from herd.store.names import InvalidDigest, InvalidModelName, ModelName, digest_hex, parse_digest, parse_name
from herd.store.progress import Progress, ProgressFn, ignore
from herd.store.quantize import parse_quantization

__all__ = [
    "CorruptModel",
    "DigestMismatch",
    "ModelDetails",
    "ModelNotFound",
    "ModelRecord",
    "ModelStore",
    "StoreError",
    "UnsafePath",
]

log = logging.getLogger(__name__)

_MAX_MANIFEST = 1 << 20  # manifests and configs are a few hundred bytes
_RECORD_CACHE = 256  # models whose records a store keeps in memory (cleared when full)
_MAX_TEXT_LAYER = 16 << 20  # templates, system prompts, licenses, params, messages


class ModelNotFound(StoreError, LookupError):
    pass


@dataclasses.dataclass(frozen=True)
class ModelDetails:
    parent_model: str
    format: str
    family: str
    families: list[str] | None
    parameter_size: str
    quantization_level: str


@dataclasses.dataclass(frozen=True)
class ModelRecord:
    name: ModelName
    manifest_path: Path
    manifest_digest: str  # sha256 hex of the manifest file: the `digest` of /api/tags
    manifest: Manifest
    size: int  # layers plus config, as Ollama's Manifest.Size
    modified_at: dt.datetime
    weights_path: Path
    weights_digest: str
    projector_path: Path | None
    adapters: list[Path]
    adapter_digests: list[str]  # sha256 hex, in the manifest's order
    template: str | None
    system: str | None
    parameters: dict[str, Any]
    messages: list[dict[str, Any]]
    licenses: list[str]
    requires: str | None
    details: ModelDetails

    @property
    def load_digest(self) -> str:
        """What a worker loads: the weights, or the weights with this model's adapters."""
        return load_key(self.weights_digest, self.adapter_digests)

    def load_target(self) -> dict[str, Any]:
        """The Job fields that say what to load (digest, weights, adapters)."""
        if not self.adapter_digests:
            return {"digest": self.weights_digest}
        return {"digest": self.load_digest, "weights": self.weights_digest, "adapters": list(self.adapter_digests)}

    def modelfile(self) -> str:
        """`ollama show --modelfile` text; no TEMPLATE line means the GGUF chat template is used."""
        mf = Modelfile(
            from_=str(self.weights_path), parameters=dict(self.parameters), template=self.template,
            system=self.system, adapters=[str(p) for p in self.adapters], licenses=list(self.licenses),
            messages=[(str(m.get("role", "")), str(m.get("content", ""))) for m in self.messages],
            requires=self.requires,
        )
        return render_modelfile(mf, show_name=self.name.display())


def _as_name(name: str | ModelName) -> ModelName:
    return name if isinstance(name, ModelName) else parse_name(name)


_Identity = tuple[int, int, int, int]  # a file's device, inode, size and mtime (ns)


def _identity(found: os.stat_result) -> _Identity:
    return found.st_dev, found.st_ino, found.st_size, found.st_mtime_ns


def _identity_of(path: str) -> _Identity | None:
    try:
        return _identity(os.stat(path))
    except OSError:
        return None


class ModelStore:
    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).expanduser()
        self.manifests_dir = self.root / "manifests"
        self.blobs_dir = self.root / "blobs"
        self._blobs_dir_text = str(self.blobs_dir)  # for the per-request checks: no pathlib there
        self._blobs = BlobStore(self.blobs_dir)
        # Records by manifest file identity. A manifest is replaced by rename (new inode) and
        # its layers are content-addressed, so an unchanged stat means an unchanged model: the
        # gateway resolves a name per request with one stat instead of reading every layer.
        self._records: dict[tuple[str, int, int, int, int], ModelRecord] = {}
        # The record last returned for each exact name, with its manifest's path and identity:
        # a repeated get() then costs one stat and one lstat per blob, without proving the path
        # contained again (pathlib and a realpath were a third of a gateway's CPU per request).
        # The identity is that of the file proven contained when the record was read.
        self._by_name: dict[str, tuple[str, _Identity, ModelRecord]] = {}

    # -- paths -------------------------------------------------------------------------------

    def manifest_path(self, name: ModelName) -> Path:
        return contained(self.manifests_dir.joinpath(*name.manifest_parts()), self.manifests_dir)

    def blob_path(self, digest: str) -> Path:
        """Where a blob lives; raises InvalidDigest for anything but sha256:<64 hex>."""
        return self._blobs.path(digest)

    # -- blobs (kept by BlobStore) -----------------------------------------------------------

    def has_blob(self, digest: str) -> bool:
        return self._blobs.has(digest)

    def add_blob(self, source: str | os.PathLike[str] | bytes | BinaryIO, *, digest: str | None = None) -> str:
        """Store a file, bytes or a binary stream; returns `sha256:<hex>` (see BlobStore.add)."""
        return self._blobs.add(source, digest=digest)

    def verify_blob(self, digest: str) -> bool:
        """Rehash a blob and compare it with its name."""
        return self._blobs.verify(digest)

    # -- reading -----------------------------------------------------------------------------

    def _scan(self) -> Iterator[tuple[ModelName, Path]]:
        # glob skips dot files, so our temporary files are never taken for manifests.
        if not self.manifests_dir.is_dir():
            return
        for rel in sorted(glob.glob(os.path.join("*", "*", "*", "*"), root_dir=self.manifests_dir)):
            path = self.manifests_dir / rel
            try:
                name = ModelName(*Path(rel).parts)
                if path.is_file():
                    yield name, contained(path, self.manifests_dir)
            except (InvalidModelName, UnsafePath) as exc:
                log.warning("ignoring manifest %s: %s", path, exc)

    def _find(self, name: ModelName) -> tuple[ModelName, Path] | None:
        """The manifest for `name`, matched case-insensitively like Ollama's getExistingName."""
        exact = self.manifest_path(name)
        if exact.is_file():
            return name, exact
        return next(((n, p) for n, p in self._scan() if n.same_model(name)), None)

    def _layer_blob(self, name: ModelName, layer: Layer) -> Path:
        try:
            path = self.blob_path(layer.digest)
            size = path.stat().st_size
        except InvalidDigest as exc:
            raise CorruptModel(f"model {name}: {exc}") from exc
        except FileNotFoundError:
            raise CorruptModel(f"model {name}: blob {layer.digest} is missing") from None
        if size != layer.size:
            raise CorruptModel(f"model {name}: blob {layer.digest} has {size} bytes, manifest says {layer.size}")
        return path

    def _text(self, name: ModelName, layer: Layer) -> str:
        data = read_capped(self._layer_blob(name, layer), _MAX_TEXT_LAYER, f"layer {layer.digest}")
        return data.decode("utf-8", errors="replace")

    def _json(self, name: ModelName, layer: Layer, kind: type[Any]) -> Any:
        try:
            value = json.loads(self._text(name, layer))
        except json.JSONDecodeError as exc:
            raise CorruptModel(f"model {name}: layer {layer.digest} is not JSON: {exc}") from exc
        if not isinstance(value, kind):
            raise CorruptModel(f"model {name}: layer {layer.digest} is not a JSON {kind.__name__}")
        return value

    def _load(self, name: ModelName, path: Path) -> ModelRecord:
        return self._load_with_identity(name, path)[0]

    def _load_with_identity(self, name: ModelName, path: Path) -> tuple[ModelRecord, _Identity]:
        """The record, and the identity its manifest had before it was read (a manifest replaced
        meanwhile shows another identity next time, so it is read again then)."""
        identity = _identity(path.stat())
        key = (str(path), *identity)
        cached = self._records.get(key)
        if cached is not None and cached.name == name and self._blobs_intact(cached.manifest):
            return cached, identity
        record = self._read(name, path)
        if len(self._records) >= _RECORD_CACHE:
            self._records.clear()
        self._records[key] = record
        return record, identity

    def _blobs_intact(self, manifest: Manifest) -> bool:
        """Every blob of a manifest read before is still a plain file of its size: one lstat
        each. Anything else (gone, resized, a symlink) makes the caller read the model again,
        which reports what is wrong."""
        for layer in [manifest.config, *manifest.layers]:
            try:
                found = os.lstat(os.path.join(self._blobs_dir_text, f"sha256-{digest_hex(layer.digest)}"))
            except OSError:
                return False
            if not stat.S_ISREG(found.st_mode) or found.st_size != layer.size:
                return False
        return True

    def _read(self, name: ModelName, path: Path) -> ModelRecord:
        raw = read_capped(path, _MAX_MANIFEST, f"manifest of {name}")
        mtime = path.stat().st_mtime
        try:
            manifest = msgspec.json.decode(raw, type=Manifest)
            config = msgspec.json.decode(
                read_capped(self._layer_blob(name, manifest.config), _MAX_MANIFEST, "config"), type=ModelConfig)
        except msgspec.DecodeError as exc:
            raise CorruptModel(f"model {name}: {exc}") from exc
        weights: Layer | None = None
        projector: Path | None = None
        adapters: list[Path] = []
        adapter_digests: list[str] = []
        texts: dict[str, str] = {}
        licenses: list[str] = []
        parameters: dict[str, Any] = {}
        messages: list[dict[str, Any]] = []
        for layer in manifest.layers:
            blob = self._layer_blob(name, layer)  # every layer's blob must exist with its size
            kind = layer.media_type
            if kind == MEDIA_MODEL:
                weights = layer  # the last one wins, as in Ollama's GetModel
            elif kind == MEDIA_PROJECTOR:
                projector = blob
            elif kind == MEDIA_ADAPTER:
                adapters.append(blob)
                adapter_digests.append(digest_hex(layer.digest))
            elif kind in (MEDIA_TEMPLATE, MEDIA_SYSTEM):
                texts[kind] = self._text(name, layer)
            elif kind == MEDIA_LICENSE:
                licenses.append(self._text(name, layer))
            elif kind == MEDIA_PARAMS:
                parameters = self._json(name, layer, dict)
            elif kind == MEDIA_MESSAGES:
                messages = self._json(name, layer, list)
                if not all(isinstance(m, dict) for m in messages):
                    raise CorruptModel(f"model {name}: messages layer holds a non-object")
        if weights is None:
            raise CorruptModel(f"model {name} has no model layer")
        return ModelRecord(
            name=name, manifest_path=path, manifest_digest=hashlib.sha256(raw).hexdigest(), manifest=manifest,
            size=sum(layer.size for layer in manifest.layers) + manifest.config.size,
            modified_at=dt.datetime.fromtimestamp(mtime, dt.UTC),
            weights_path=self.blob_path(weights.digest), weights_digest=digest_hex(weights.digest),
            projector_path=projector, adapters=adapters, adapter_digests=adapter_digests,
            template=texts.get(MEDIA_TEMPLATE), system=texts.get(MEDIA_SYSTEM), parameters=parameters,
            messages=messages, licenses=licenses,
            requires=config.requires or None,
            details=ModelDetails(
                parent_model=weights.from_, format=config.model_format or "gguf", family=config.model_family,
                families=config.model_families, parameter_size=config.model_type,
                quantization_level=config.file_type,
            ),
        )

    def get(self, name: str | ModelName) -> ModelRecord | None:
        """The model by name (case-insensitive); None if absent, CorruptModel if unreadable."""
        text = name if isinstance(name, str) else name.full()
        remembered = self._by_name.get(text)
        if remembered is not None:
            path, identity, record = remembered
            if _identity_of(path) == identity and self._blobs_intact(record.manifest):
                return record
            del self._by_name[text]
        wanted = _as_name(name)
        found = self._find(wanted)
        if found is None:
            return None
        record, identity = self._load_with_identity(*found)
        # Only an exact match: a case-insensitive one may later be overtaken by an exact one.
        if found[0] == wanted:
            if len(self._by_name) >= _RECORD_CACHE:
                self._by_name.clear()
            self._by_name[text] = (str(found[1]), identity, record)
        return record

    def list(self) -> list[ModelRecord]:
        """Every readable model; broken manifests are logged and skipped, never fatal."""
        records = []
        for name, path in self._scan():
            try:
                records.append(self._load(name, path))
            except (StoreError, OSError) as exc:
                log.warning("skipping model %s: %s", name.display(), exc)
        return records

    # -- writing -----------------------------------------------------------------------------

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / ".herd-lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _references(self, path: Path) -> set[str]:
        try:
            manifest = msgspec.json.decode(read_capped(path, _MAX_MANIFEST, "manifest"), type=Manifest)
        except (OSError, StoreError, msgspec.DecodeError):
            return set()
        refs = set()
        for layer in [manifest.config, *manifest.layers]:
            with contextlib.suppress(InvalidDigest):
                refs.add(parse_digest(layer.digest))
        return refs

    def _collect(self, candidates: set[str]) -> set[str]:
        """Remove candidate blobs that no manifest references any more (lock held); those removed."""
        in_use = set().union(*(self._references(path) for _, path in self._scan()))
        for digest in candidates - in_use:
            self.blob_path(digest).unlink(missing_ok=True)
        return candidates - in_use

    def _replace_manifest(self, name: ModelName, data: bytes, refs: set[str], *,
                          prune: bool = True) -> tuple[ModelName, set[str]]:
        """Write a manifest for `name` (or the differently cased model already there); with
        `prune`, remove the blobs only the replaced manifest used. The name and blobs removed."""
        with self._locked():
            missing = [d for d in refs if not self.has_blob(d)]
            if missing:
                raise StoreError(f"cannot write {name}: blobs {', '.join(sorted(missing))} are missing")
            found = self._find(name)
            target = found[0] if found else name
            path = self.manifest_path(target)
            old = self._references(path)
            atomic_write(path, data)
            removed = self._collect(old - refs) if prune else set()
        return target, removed

    def write_manifest(self, name: str | ModelName, data: bytes, *, prune: bool = True) -> tuple[ModelName, set[str]]:
        """Store a manifest verbatim (as pulled); its blobs must be here. See _replace_manifest."""
        try:
            manifest = msgspec.json.decode(data, type=Manifest)
            refs = {parse_digest(layer.digest) for layer in [manifest.config, *manifest.layers]}
        except (msgspec.DecodeError, InvalidDigest) as exc:
            raise CorruptModel(f"manifest for {name}: {exc}") from exc
        return self._replace_manifest(_as_name(name), data, refs, prune=prune)

    def _write(self, name: ModelName, config: dict[str, Any], layers: builtins.list[Layer]) -> ModelRecord:
        config_layer = self._text_layer(MEDIA_CONFIG, go_json(config))
        manifest = Manifest(schema_version=2, config=config_layer, layers=layers)
        refs = {parse_digest(layer.digest) for layer in [config_layer, *layers]}
        target, _ = self._replace_manifest(name, msgspec.json.encode(manifest) + b"\n", refs)
        record = self.get(target)
        assert record is not None
        return record

    def _text_layer(self, media_type: str, data: bytes) -> Layer:
        return Layer(media_type=media_type, digest=self.add_blob(data), size=len(data))

    def _file_layer(self, media_type: str, path: Path) -> Layer:
        return Layer(media_type=media_type, digest=self.add_blob(path), size=path.stat().st_size)

    def _local_file(self, text: str, base_dir: Path | None, what: str) -> Path | None:
        """A FROM/ADAPTER value as a GGUF file: a blob digest, or a path when base_dir allows."""
        with contextlib.suppress(InvalidDigest):
            path = self.blob_path(parse_digest(text))
            if not path.is_file():
                raise StoreError(f"{what} {text}: no such blob")
            return path
        if base_dir is None:
            return None  # API callers: no access to the server's file system
        path = Path(text).expanduser()
        path = path if path.is_absolute() else base_dir / path
        if path.is_dir():
            raise StoreError(f"{what} {text}: is a directory; only GGUF files can be imported")
        if path.is_file():
            return path
        if text.startswith((".", "/", "~")) or text.endswith(".gguf"):
            raise StoreError(f"{what} {text}: no such file")
        return None

    def _from(self, modelfile: Modelfile, base_dir: Path | None, statuses: dict[str, str],
              report: ProgressFn) -> tuple[builtins.list[Layer], dict[str, Any], dict[str, Any]]:
        """The layers, config and parameters FROM gives: a GGUF file (with Ollama's template
        auto-detection) or an existing model, whose layers are inherited."""
        weights = self._local_file(modelfile.from_, base_dir, "FROM")
        if weights is None:
            try:
                base = self.get(modelfile.from_)
            except InvalidModelName as exc:
                raise StoreError(f"FROM {modelfile.from_}: not a file or a valid model name") from exc
            if base is None:
                raise ModelNotFound(f'model "{modelfile.from_}" not found')
            shown = base.name.display()
            inherited = json.loads(read_capped(self._layer_blob(base.name, base.manifest.config), _MAX_MANIFEST,
                                                "config"))
            return ([msgspec.structs.replace(layer, from_=shown) for layer in base.manifest.layers], inherited,
                    dict(base.parameters))
        report(Progress("parsing GGUF"))
        info = read_checked(weights, f"FROM {modelfile.from_}")
        if gguf_kind(info) == "adapter":
            raise StoreError(f"FROM {modelfile.from_}: is a LoRA adapter; name it with ADAPTER, after FROM its "
                             "base model")
        arch = info.architecture or ""
        layers = [self._file_layer(MEDIA_MODEL, weights)]
        config: dict[str, Any] = {
            "model_format": "gguf", "model_family": arch, "model_families": [arch] if arch else None,
            "model_type": info.parameter_size, "file_type": info.file_type or "unknown",
            # Ollama's ConfigV2 names the platform here, not the model architecture.
            "architecture": "amd64", "os": "linux",
        }
        parameters: dict[str, Any] = {}
        # Ollama stores the named Go template that matches the GGUF's chat template (and its stop
        # words); without a match, prompts keep being rendered with the GGUF's Jinja template.
        named = autodetect_template(info) if modelfile.template is None else None
        if named is not None:
            layer = self._text_layer(MEDIA_TEMPLATE, named.source.encode())
            statuses[layer.digest] = f"using autodetected template {named.name}"
            layers.append(layer)
            if named.stop:
                parameters["stop"] = list(named.stop)
        return layers, config, parameters

    def _quantize(self, layers: builtins.list[Layer], config: dict[str, Any], quantization: str,
                  statuses: dict[str, str], report: ProgressFn) -> None:
        """Replace the model layer by its quantized copy (Ollama quantizes in create, before
        the Modelfile's own layers are added)."""
        index = next(i for i, layer in enumerate(layers) if layer.media_type == MEDIA_MODEL)
        path = self.blob_path(layers[index].digest)
        done = quantize_weights(self._blobs, path, read_checked(path, "model"), quantization, report)
        if done is None:
            return
        quantized, info = done
        layer = Layer(media_type=MEDIA_MODEL, digest=f"sha256:{quantized.name.removeprefix('sha256-')}",
                      size=quantized.stat().st_size)
        statuses[layer.digest] = f"creating new layer {layer.digest}"
        layers[index] = layer
        config["file_type"] = info.file_type or quantization

    def create(self, name: str | ModelName, modelfile: Modelfile, *, base_dir: Path | None = None,
               quantize: str | None = None, progress: ProgressFn = ignore) -> ModelRecord:
        """Create (or replace) a model from a parsed Modelfile, reporting progress as Ollama does.

        FROM is a GGUF file (a `sha256:` blob digest, or a path relative to `base_dir`, `~`
        expanded) or an existing model whose layers are inherited. Without `base_dir` no path
        on this machine is read: pass it only for a Modelfile from a trusted local user.
        `quantize` (e.g. "q4_K_M") quantizes F16/F32 weights with llama.cpp into a new blob.
        """
        target = _as_name(name)
        quantization = parse_quantization(quantize) if quantize else None  # refuse before any work
        statuses: dict[str, str] = {}  # layer digest -> its progress line, when not "using existing layer"
        layers, config, parameters = self._from(modelfile, base_dir, statuses, progress)

        # Adapters are checked before any quantizing (minutes of CPU) is spent.
        base_info: GGUFInfo | None = None
        for adapter in modelfile.adapters:
            path = self._local_file(adapter, base_dir, "ADAPTER")
            if path is None:
                raise StoreError(f"ADAPTER {adapter}: no such file")
            if base_info is None:
                model = next(layer for layer in layers if layer.media_type == MEDIA_MODEL)
                base_info = read_checked(self.blob_path(model.digest), "model")
            check_adapter(read_checked(path, f"ADAPTER {adapter}"), f"ADAPTER {adapter}", base_info)
            layers.append(self._file_layer(MEDIA_ADAPTER, path))
        if quantization is None:
            return self._finish_create(target, modelfile, layers, config, parameters, statuses, progress)
        before = {layer.digest for layer in layers}
        self._quantize(layers, config, quantization, statuses, progress)
        try:
            return self._finish_create(target, modelfile, layers, config, parameters, statuses, progress)
        except BaseException:  # never leave a quantized copy that no model uses
            with self._locked():
                self._collect({parse_digest(layer.digest) for layer in layers if layer.digest not in before})
            raise

    def _finish_create(self, target: ModelName, modelfile: Modelfile, layers: builtins.list[Layer],
                       config: dict[str, Any], parameters: dict[str, Any], statuses: dict[str, str],
                       progress: ProgressFn) -> ModelRecord:
        """The Modelfile's text layers over the base's, then the manifest."""

        def replace(media_type: str, data: bytes) -> None:
            layers[:] = [layer for layer in layers if layer.media_type != media_type]
            add(media_type, data)

        def add(media_type: str, data: bytes) -> None:
            new = not self.has_blob("sha256:" + hashlib.sha256(data).hexdigest())
            layer = self._text_layer(media_type, data)
            if new:
                statuses[layer.digest] = f"creating new layer {layer.digest}"
            layers.append(layer)

        if modelfile.template:
            replace(MEDIA_TEMPLATE, modelfile.template.encode())
        if modelfile.system:
            replace(MEDIA_SYSTEM, modelfile.system.encode())
        for text in modelfile.licenses:
            add(MEDIA_LICENSE, text.encode())
        parameters.update(modelfile.parameters)  # a new value replaces the inherited one whole
        if parameters:
            replace(MEDIA_PARAMS, go_json(parameters, sort_keys=True))
        if modelfile.messages:
            replace(MEDIA_MESSAGES, go_json([{"role": r, "content": c} for r, c in modelfile.messages]))
        if modelfile.requires:
            config["requires"] = modelfile.requires
        for layer in layers:
            progress(Progress(statuses.get(layer.digest, f"using existing layer {layer.digest}")))
        progress(Progress("writing manifest"))
        return self._write(target, config, layers)

    def copy(self, source: str | ModelName, destination: str | ModelName) -> ModelRecord:
        """Copy a model's manifest verbatim under another name (blobs are shared)."""
        src = _as_name(source)
        found = self._find(src)
        if found is None:
            raise ModelNotFound(f'model "{source}" not found')
        self._load(*found)  # refuse to copy a broken model
        data = read_capped(found[1], _MAX_MANIFEST, "manifest")
        target, _ = self._replace_manifest(_as_name(destination), data, self._references(found[1]))
        record = self.get(target)
        assert record is not None
        return record

    def delete(self, name: str | ModelName) -> None:
        """Remove a model, the blobs no other model uses, and directories left empty."""
        found = self._find(_as_name(name))
        if found is None:
            raise ModelNotFound(f'model "{name}" not found')
        path = found[1]
        with self._locked():
            refs = self._references(path)
            path.unlink(missing_ok=True)
            parent = path.parent
            while parent != self.manifests_dir and parent.is_relative_to(self.manifests_dir):
                try:
                    parent.rmdir()
                except OSError:
                    break  # not empty
                parent = parent.parent
            self._collect(refs)
