"""At create, a GGUF's Jinja chat template picks one of Ollama's named Go templates, stored as a
template layer with its stop words as parameters, as `ollama create` does; a template that
matches none keeps rendering with the GGUF's Jinja template."""

from __future__ import annotations

import filecmp
from pathlib import Path

import pytest

import herd
from herd.chat_prompt import match_named_template, templates_dir
from herd.store.gguf import read_gguf
from herd.store.modelfile import parse_modelfile
from herd.store.progress import Progress
from herd.store.store import ModelStore
from tests.gguf_writer import STRING, gguf_bytes
from tests.tiny_models import smollm_info

SHARED = Path(__file__).resolve().parent.parent.parent / "shared" / "conformance" / "ollama-templates"


def _gguf(path: Path, chat_template: str) -> Path:
    path.write_bytes(gguf_bytes([("general.architecture", STRING, "llama"),
                                 ("tokenizer.chat_template", STRING, chat_template)], [("w", (32, 4), 0)]))
    return path


@pytest.fixture
def store(tmp_path: Path) -> ModelStore:
    return ModelStore(tmp_path / "models")


def smollm_template() -> str:
    return str(smollm_info().metadata["tokenizer.chat_template"])


def test_a_chatml_gguf_gets_ollamas_chatml_template_and_stops(store: ModelStore, tmp_path: Path) -> None:
    _gguf(tmp_path / "m.gguf", smollm_template())
    progress: list[Progress] = []
    record = store.create("m", parse_modelfile("FROM m.gguf\nPARAMETER temperature 0.1"), base_dir=tmp_path,
                          progress=progress.append)
    assert record.template == (templates_dir() / "chatml.gotmpl").read_text()
    assert record.parameters == {"stop": ["<|im_start|>", "<|im_end|>"], "temperature": 0.1}
    assert [layer.media_type.rsplit(".", 1)[1] for layer in record.manifest.layers] == ["model", "template", "params"]
    params = store.blob_path(record.manifest.layers[2].digest).read_bytes()
    assert params == b'{"stop":["\\u003c|im_start|\\u003e","\\u003c|im_end|\\u003e"],"temperature":0.1}\n'
    assert "using autodetected template chatml" in [p.status for p in progress]
    assert 'TEMPLATE "{{- range .Messages }}' in record.modelfile()


def test_a_modelfile_template_wins_and_brings_no_stops(store: ModelStore, tmp_path: Path) -> None:
    _gguf(tmp_path / "m.gguf", smollm_template())
    record = store.create("m", parse_modelfile("FROM m.gguf\nTEMPLATE {{ .Prompt }}"), base_dir=tmp_path)
    assert record.template == "{{ .Prompt }}" and record.parameters == {}


def test_a_template_like_no_other_keeps_the_gguf_jinja(store: ModelStore, tmp_path: Path) -> None:
    _gguf(tmp_path / "m.gguf", "{% for m in messages %}[[{{ m['role'] }}]] {{ m['content'] }}\n{% endfor %}>>>")
    progress: list[Progress] = []
    record = store.create("m", parse_modelfile("FROM m.gguf"), base_dir=tmp_path, progress=progress.append)
    assert record.template is None and record.parameters == {}
    assert not [p for p in progress if "autodetected" in p.status]


def test_a_model_made_from_a_model_is_not_detected_again(store: ModelStore, tmp_path: Path) -> None:
    _gguf(tmp_path / "m.gguf", smollm_template())
    store.create("base", parse_modelfile("FROM m.gguf\nTEMPLATE {{ .Prompt }}"), base_dir=tmp_path)
    child = store.create("child", parse_modelfile("FROM base\nSYSTEM hi"))
    assert child.template == "{{ .Prompt }}" and child.parameters == {}


def test_the_named_templates_ship_inside_the_package() -> None:
    """An installed wheel finds them (pyproject package-data), without ../shared beside it."""
    assert herd.__file__ is not None  # a regular package
    packaged = Path(herd.__file__).parent / "templates"
    assert templates_dir() == packaged
    assert (packaged / "index.json").is_file() and (packaged / "LICENSE.ollama").is_file()
    assert match_named_template(smollm_template()) is not None
    if not SHARED.is_dir():
        pytest.skip("shared/conformance is not beside this checkout")
    names = [p.name for p in SHARED.iterdir() if p.suffix in (".gotmpl", ".json")]
    match, mismatch, errors = filecmp.cmpfiles(SHARED, packaged, names, shallow=False)
    assert (mismatch, errors) == ([], []) and len(match) == len(names)


def test_the_demo_gguf_is_chatml() -> None:
    from herd.demo import demo_gguf

    template = read_gguf(demo_gguf()).chat_template
    assert template is not None
    found = match_named_template(template)
    assert found is not None and found.name == "chatml"
