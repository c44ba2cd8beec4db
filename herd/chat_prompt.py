"""Ollama chat prompts: a Modelfile TEMPLATE rendered over a conversation exactly as Ollama renders it.

Follows Ollama's server/prompt.go (image tags) and template/template.go (Execute): templates that
mention `.Messages` see the whole conversation once; older templates run once per
(System, Prompt, Response) turn, the last turn cut right after `{{ .Response }}`.

Also picks a default Go template for a GGUF's Jinja chat template, as Ollama's template.Named does.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from herd.gotemplate import GO_BUILTINS, GoSlice, Template, parse
from herd.gotemplate.named import NamedTemplate, levenshtein, load_named_templates
from herd.gotemplate.named import match_named_template as _match
from herd.gotemplate.ollama import cut_after_response, variables, with_response
from herd.gotemplate.ollama_data import ChatMessage, json_string, tool_value
from herd.gotemplate.render import execute

__all__ = [
    "NamedTemplate",
    "default_template_for",
    "levenshtein",
    "load_named_templates",
    "match_named_template",
    "render_fill_in_middle",
    "render_ollama_template",
    "templates_dir",
]

# --- the conversation, prepared as Ollama prepares it ------------------------------------------


def _tag_images(messages: list[ChatMessage]) -> None:
    """prompt.go: each image becomes [img-N], replacing an [img] placeholder or prefixed to the content."""
    count = 0
    for m in messages:
        prefix, prompt = "", m.content
        for _ in m.images:
            tag = f"[img-{count}]"
            count += 1
            if "[img]" in prompt:
                prompt = prompt.replace("[img]", tag, 1)
            else:
                prefix += tag
        m.content = prefix + prompt


def _collate(messages: list[ChatMessage]) -> tuple[str, list[ChatMessage]]:
    """All system contents joined, and consecutive same-role messages (tool results excepted) merged."""
    system: list[str] = []
    collated: list[ChatMessage] = []
    for m in messages:
        if m.role == "system":
            system.append(m.content)
        if collated and collated[-1].role == m.role and m.role != "tool":
            collated[-1].content += "\n\n" + m.content
        else:
            collated.append(m)
    return "\n\n".join(system), collated


# --- rendering -------------------------------------------------------------------------------


@functools.lru_cache(maxsize=128)
def _parsed(source: str) -> tuple[Template, bool]:
    tmpl = with_response(parse(source))
    return tmpl, "messages" in variables(tmpl)


def render_ollama_template(source: str, messages: Sequence[Mapping[str, Any]], *, system: str | None = None,
                           tools: Sequence[Any] | None = None, response: str = "",
                           think: bool | str | None = None, image_tags: bool = True) -> str:
    """The prompt Ollama builds from a TEMPLATE and a chat request.

    messages are Ollama API messages (role, content, thinking, images, tool_calls, tool_name, ...).
    `system` is the model's default SYSTEM: used, as Ollama does, when the conversation does not
    start with a system message. `response` pre-fills the assistant's answer (a trailing assistant
    message). `think` is the request's think value. Raises TemplateError (or ValueError for bad
    messages).
    """
    tmpl, uses_messages = _parsed(source)
    msgs = [ChatMessage.from_api(m) for m in messages]
    if system and (not msgs or msgs[0].role != "system"):
        msgs.insert(0, ChatMessage("system", system))
    if response:
        msgs.append(ChatMessage("assistant", response))
    if image_tags:
        _tag_images(msgs)
    system_text, collated = _collate(msgs)
    thinking = _thinking_values(think)
    if uses_messages:
        return tmpl.render({
            "System": system_text,
            "Messages": GoSlice((m.to_template() for m in collated), type_name="[]*template.templateMessage",
                                nil=not collated),
            "Tools": GoSlice((tool_value(t) for t in tools or ()), type_name="template.templateTools",
                             nil=tools is None, string=json_string),
            "Response": "",
            **thinking,
        }, missing_key="zero")
    return _render_legacy(tmpl, collated, thinking)


def render_fill_in_middle(source: str, prompt: str, suffix: str) -> str:
    """The prompt Ollama builds for a generate request with a `suffix`: the TEMPLATE run once
    with only `.Prompt` and `.Suffix` (no system, no messages), as template.Execute does."""
    tmpl, _ = _parsed(source)
    return tmpl.render({"Prompt": prompt, "Suffix": suffix, "Response": "", **_thinking_values(None)},
                       missing_key="zero")


def _thinking_values(think: bool | str | None) -> dict[str, Any]:
    """The template's thinking fields from a request's `think` (api.ThinkValue: Bool() and
    String() as Ollama reads them)."""
    return {
        "Think": bool(think) if not isinstance(think, str) else True,
        "ThinkLevel": think if isinstance(think, str) else "medium" if think else "",
        "IsThinkSet": think is not None,
    }


def _render_legacy(tmpl: Template, messages: list[ChatMessage], thinking: dict[str, Any]) -> str:
    """One execution per (System, Prompt, Response) turn; a turn ends when a new one starts."""
    out: list[str] = []
    turn = {"System": "", "Prompt": "", "Response": ""}

    def flush() -> None:
        out.append(tmpl.render({**turn, **thinking}, missing_key="zero"))
        turn.update(System="", Prompt="", Response="")

    for m in messages:
        if m.role == "system":
            if turn["Prompt"] or turn["Response"]:
                flush()
            turn["System"] = m.content
        elif m.role == "user":
            if turn["Response"]:
                flush()
            turn["Prompt"] = m.content
        elif m.role == "assistant":
            turn["Response"] = m.content
    # Ollama renders the last turn from a bare copy of the tree: no Ollama functions, no
    # {{define}}s, default missingkey. Its output stops right after {{ .Response }}.
    out.append(execute(tmpl.source, cut_after_response(tmpl.root), {**turn, **thinking}, definitions={},
                       funcs=GO_BUILTINS, limits=tmpl.limits))
    return "".join(out)


# --- default templates for GGUF files ----------------------------------------------------------


def templates_dir() -> Path:
    """Where Ollama's named templates live: $HERD_OLLAMA_TEMPLATES, else the copy shipped in this
    package (herd/templates: index.json, NAME.gotmpl, NAME.json from Ollama's template/ folder)."""
    configured = os.environ.get("HERD_OLLAMA_TEMPLATES")
    if configured:
        return Path(configured)
    return Path(__file__).resolve().parent / "templates"


def match_named_template(jinja_template: str, directory: Path | None = None) -> NamedTemplate | None:
    """The Ollama template entry for a GGUF's tokenizer.chat_template, or None when nothing is close."""
    return _match(jinja_template, directory or templates_dir())


def default_template_for(jinja_template: str, directory: Path | None = None) -> str | None:
    """The Ollama Go template for a GGUF's tokenizer.chat_template, or None when nothing is close."""
    match = match_named_template(jinja_template, directory)
    return match.source if match else None
