"""Ollama's chat templates rendered byte for byte, and GGUF Jinja templates matched to them.

The reference data (Ollama's templates, expected renderings and Jinja index) lives outside the repo
in ../shared/conformance/ollama-templates, described by its README.md; nothing from it is copied
here. The message sets and the trailing-space rule are read from that README too.

The chat_prompt tests at the end need no data: their expectations are what Ollama's own
template.Execute produced for the same input.
"""

from __future__ import annotations

import json
import random
import re
from pathlib import Path
from typing import Any

import pytest

from herd.chat_prompt import (
    default_template_for,
    levenshtein,
    load_named_templates,
    match_named_template,
    render_ollama_template,
)
from herd.gotemplate import TemplateError, parse

DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "conformance" / "ollama-templates"
MISSING = f"conformance data not found at {DATA} (it ships beside the repo, in shared/)"
needs_data = pytest.mark.skipif(not DATA.is_dir(), reason=MISSING)


def _readme_cases() -> tuple[dict[str, list[dict[str, str]]], set[str]]:
    """The README's table of message sets, and the templates whose trailing space is dropped."""
    text = (DATA / "README.md").read_text(encoding="utf-8")
    cases: dict[str, list[dict[str, str]]] = {}
    previous: list[dict[str, str]] = []
    for name, cell in re.findall(r"^\|\s*`([\w-]+)`\s*\|(.*)\|\s*$", text, re.M):
        messages: list[dict[str, str]] = []
        for part in cell.split("·"):
            if "above" in part:  # "then the three messages above": the previous row's messages
                messages += previous
            else:
                role, content = re.fullmatch(r"\s*(\w+):\s*`([^`]*)`\s*", part).groups()  # type: ignore[union-attr]
                messages.append({"role": role, "content": content})
        assert [m["role"] for m in messages] == name.split("-"), f"README row {name} does not parse"
        cases[name] = previous = messages
    rule = next(p for p in text.split("\n\n") if "trailing space" in p)
    return cases, set(re.findall(r"`([\w-]+)`", rule))


def _rendering_params() -> list[Any]:
    if not DATA.is_dir():
        return [pytest.param(None, None, marks=pytest.mark.skip(reason=MISSING))]
    return [pytest.param(template.name, case.name, id=f"{template.stem}/{case.name}")
            for template in sorted(DATA.glob("*.gotmpl"))
            for case in sorted((DATA / "testdata" / template.name).iterdir())]


def _jsonl_params() -> list[Any]:
    if not DATA.is_dir():
        return [pytest.param(None, None, marks=pytest.mark.skip(reason=MISSING))]
    lines = (DATA / "testdata" / "templates.jsonl").read_text(encoding="utf-8").splitlines()
    return [pytest.param(*next(iter(json.loads(line).items())), id=f"line{n}")
            for n, line in enumerate(lines, 1) if line.strip()]


@pytest.mark.parametrize(("template", "case"), _rendering_params())
def test_template_renders_byte_for_byte(template: str, case: str) -> None:
    cases, trailing_space = _readme_cases()
    source = (DATA / template).read_text(encoding="utf-8")
    rendered = render_ollama_template(source, cases[case])
    if Path(template).stem in trailing_space and rendered.endswith(" "):
        rendered = rendered[:-1]
    assert rendered.encode("utf-8") == (DATA / "testdata" / template / case).read_bytes()


@needs_data
def test_every_template_and_case_is_covered() -> None:
    cases, trailing_space = _readme_cases()
    templates = {p.stem for p in DATA.glob("*.gotmpl")}
    assert len(cases) == 3 and trailing_space and trailing_space <= templates
    for stem in templates:
        assert {p.name for p in (DATA / "testdata" / f"{stem}.gotmpl").iterdir()} == set(cases)


@pytest.mark.parametrize(("expected", "jinja"), _jsonl_params())
def test_jinja_template_picks_its_ollama_template(expected: str, jinja: str) -> None:
    match = match_named_template(jinja, DATA)
    assert match is not None and match.name == expected
    assert default_template_for(jinja, DATA) == match.source
    assert parse(match.source).root.nodes  # and it parses to something


@needs_data
def test_index_entries_match_themselves_and_carry_stops() -> None:
    entries = load_named_templates(DATA)
    for entry in entries:
        assert levenshtein(entry.jinja, entry.jinja) == 0
        assert match_named_template(entry.jinja, DATA) == next(e for e in entries if e.jinja == entry.jinja)
    assert any(entry.stop for entry in entries)
    assert match_named_template("{{ nothing like any chat template }}" * 20, DATA) is None


def test_levenshtein_agrees_with_the_textbook_algorithm() -> None:
    def textbook(a: str, b: str) -> int:
        row = list(range(len(b) + 1))
        for i, ca in enumerate(a, 1):
            prev, row[0] = row[0], i
            for j, cb in enumerate(b, 1):
                prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (ca != cb))
        return row[-1]

    rng = random.Random(7)
    for _ in range(500):
        a = "".join(rng.choice("ab{é}") for _ in range(rng.randint(0, 70)))
        b = "".join(rng.choice("ab{é}") for _ in range(rng.randint(0, 70)))
        assert levenshtein(a, b) == textbook(a, b)


def test_no_data_dir_means_no_default_template(tmp_path: Path) -> None:
    assert default_template_for("{{ messages }}", tmp_path) is None


# --- chat_prompt behaviour beyond the conformance data ------------------------------------

CHATML_LEGACY = ("{{ if .System }}<|im_start|>system\n{{ .System }}<|im_end|>\n{{ end }}{{ if .Prompt }}"
                 "<|im_start|>user\n{{ .Prompt }}<|im_end|>\n{{ end }}<|im_start|>assistant\n"
                 "{{ .Response }}<|im_end|>\n")
CONVERSATION = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
                {"role": "assistant", "content": "Hello!"}, {"role": "user", "content": "Bye"}]


def test_legacy_templates_render_turn_by_turn() -> None:
    expected = ("<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
                "Hello!<|im_end|>\n<|im_start|>user\nBye<|im_end|>\n<|im_start|>assistant\n")
    assert render_ollama_template(CHATML_LEGACY, CONVERSATION) == expected
    # The last turn stops right after {{ .Response }}: a trailing assistant message is a prefill.
    assert render_ollama_template(CHATML_LEGACY, CONVERSATION, response="See") == expected + "See"
    # A template without .Response gets one appended, as Ollama's Parse does.
    mistral = "[INST] {{ if .System }}{{ .System }}\n\n{{ end }}{{ .Prompt }}[/INST] "
    assert render_ollama_template(mistral, CONVERSATION) == "[INST] Be brief.\n\nHi[/INST] Hello![INST] Bye[/INST] "


def test_legacy_last_turn_quirks_match_ollama() -> None:
    turns = [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}, {"role": "user", "content": "q2"}]
    # deleteNode drops the whole pipeline once a command after .Response loses its arguments.
    assert render_ollama_template('{{ .Prompt }}|{{ .Response | printf "%s" }}|tail', turns) == "q|a|tailq2|"
    # The last turn runs without Ollama's functions...
    with pytest.raises(TemplateError, match='"json" is not a defined function'):
        render_ollama_template("{{ json .Prompt }}{{ .Response }}", turns[:1])
    # ...and a .Response followed by {{else}} makes Ollama panic.
    with pytest.raises(TemplateError):
        render_ollama_template("{{ .Prompt }}{{ if .Response }}R{{ .Response }}{{ else }}none{{ end }}", turns[:1])


TOOLS = [{"type": "function", "function": {
    "name": "get_weather", "description": "Weather <now>", "parameters": {
        "type": "object", "required": ["city"], "properties": {
            "city": {"type": "string", "description": "The city"},
            "days": {"type": ["integer", "null"], "enum": [1, 2]},
            "unit": {"anyOf": [{"type": "string"}, {"type": "number"}]}}}}}]
TOOL_TURNS: list[dict[str, Any]] = [
    {"role": "user", "content": "Weather?"},
    {"role": "assistant", "content": "", "tool_calls": [
        {"function": {"name": "get_weather", "arguments": {"city": "Paris", "days": 2}}}]},
    {"role": "tool", "content": "sunny", "tool_name": "get_weather"},
    {"role": "tool", "content": "22C", "tool_name": "get_weather"},
]
TOOL_TEMPLATE = (
    "{{ range .Tools }}{{ .Function }}\n{{ range $k, $v := .Function.Parameters.Properties }}{{ $k }}: "
    "{{ toTypeScriptType $v }} ({{ $v.Type }}) {{ json $v }}\n{{ end }}{{ end }}{{ range .Messages }}{{ .Role }}:"
    "{{ .Content }}{{ range .ToolCalls }} call {{ .Function.Name }}{{ .Function.Arguments }}{{ end }}"
    "{{ if .ToolName }} from {{ .ToolName }}{{ end }}\n{{ end }}{{ .Tools }}|{{ json .Tools }}"
)


def test_tools_and_tool_calls_look_like_ollamas() -> None:
    function = ('{"name":"get_weather","description":"Weather \\u003cnow\\u003e","parameters":{"type":"object",'
                '"required":["city"],"properties":{"city":{"type":"string","description":"The city"},"days":{"type":'
                '["integer","null"],"enum":[1,2]},"unit":{"anyOf":[{"type":"string"},{"type":"number"}]}}}}')
    conversation = ('user:Weather?\nassistant: call get_weather{"city":"Paris","days":2}\ntool:sunny from get_weather\n'
                    "tool:22C from get_weather\n")
    tools = f'[{{"type":"function","function":{function}}}]'
    assert render_ollama_template(TOOL_TEMPLATE, TOOL_TURNS, tools=TOOLS) == (
        f"{function}\ncity: string (string) {{\"type\":\"string\",\"description\":\"The city\"}}\n"
        'days: number | null ([integer null]) {"type":["integer","null"],"enum":[1,2]}\n'
        'unit: string | number () {"anyOf":[{"type":"string"},{"type":"number"}]}\n'
        f"{conversation}{tools}|{tools}")
    # Tool results are never merged; no tools at all is a nil list (json null), none given an empty one.
    assert render_ollama_template(TOOL_TEMPLATE, TOOL_TURNS) == conversation + "null|null"
    assert render_ollama_template(TOOL_TEMPLATE, TOOL_TURNS, tools=[]) == conversation + "[]|[]"


def test_system_think_and_image_tags() -> None:
    template = ("{{ .System }}|{{ .Think }} {{ .ThinkLevel }} {{ .IsThinkSet }}|"
                "{{ range .Messages }}{{ .Content }};{{ end }}")
    user = {"role": "user", "content": "look [img] here", "images": ["aGk=", "aGk="]}
    assert render_ollama_template(template, [user], system="Default", think="high") == (
        "Default|true high true|Default;[img-1]look [img-0] here;")
    assert render_ollama_template(template, [CONVERSATION[0], user], system="Default", think=True) == (
        "Be brief.|true medium true|Be brief.;[img-1]look [img-0] here;")
    assert render_ollama_template(template, [{"role": "USER", "content": "a"}, {"role": "user", "content": "b"}]) == (
        "|false  false|a\n\nb;")  # roles are lower-cased and consecutive turns of one role merged
    legacy = "{{ .Think }} {{ .ThinkLevel }} {{ .IsThinkSet }} {{ .Prompt }}"
    assert render_ollama_template(legacy, [{"role": "user", "content": "q"}], think=True) == "true medium true q"
