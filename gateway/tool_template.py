"""What a model's template writes before a tool call, and the prompt of a request with tools.

Ollama finds a template's tool-call tag in its parse tree (the first text inside
`{{ if .ToolCalls }}`); that works for Go templates only. Herd asks the template itself, which
works the same for Go and Jinja: it renders one assistant turn with text and one with a probe
call, and the text the call turn has before the call's JSON (after what both turns share) is
the opener: `<tool_call>\n` for Qwen and Hermes, `[TOOL_CALLS] [` for Mistral, nothing for
Llama 3.1 (whose calls are bare JSON). A template that renders no calls has no opener.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from gateway.catalog import ResolvedModel
from gateway.chat_template import TemplateError, render_jinja
from gateway.prompt_fit import PromptFit, fit_conversation
from gateway.tool_calls import TextSplitter
from gateway.tools import ToolPlan
from herd.chat_prompt import render_ollama_template
from herd.gotemplate import TemplateError as GoTemplateError
from herd.protocol import OutputFormat

_PROBE = "herd_probe_function"
_TEXT = "\x07"  # the text turn's content: a character no opener starts with
_PROBE_TURNS: list[dict[str, Any]] = [{"role": "user", "content": "Hi"}]
_CALL = {"id": "call_probe", "type": "function", "function": {"name": _PROBE, "arguments": {"probe": 1}}}


def _opener(render: Callable[[list[dict[str, Any]]], str]) -> str:
    try:
        with_text = render([*_PROBE_TURNS, {"role": "assistant", "content": _TEXT}])
        with_call = render([*_PROBE_TURNS, {"role": "assistant", "content": "", "tool_calls": [_CALL]}])
    except (TemplateError, GoTemplateError, ValueError, TypeError):
        return ""  # a template that cannot render a call turn offers no tag: calls are bare JSON
    at = with_call.find(_PROBE)
    if at < 0:
        return ""
    shared = next((i for i, (a, b) in enumerate(zip(with_text, with_call, strict=False)) if a != b),
                  min(len(with_text), len(with_call)))
    before = with_call[min(shared, at):at]
    brace = before.find("{")
    return before[:brace] if brace >= 0 else before


@lru_cache(maxsize=64)
def go_call_opener(source: str) -> str:
    return _opener(lambda messages: render_ollama_template(source, messages))


@lru_cache(maxsize=64)
def jinja_call_opener(source: str, bos_token: str = "", eos_token: str = "") -> str:
    return _opener(lambda messages: render_jinja(source, messages, bos_token=bos_token, eos_token=eos_token,
                                                 add_generation_prompt=False))


def call_opener(model: ResolvedModel) -> str:
    """The text the model's template writes before a tool call's JSON ("" if none)."""
    if model.record.template:
        return go_call_opener(model.record.template)
    if model.gguf.chat_template:
        return jinja_call_opener(model.gguf.chat_template, model.gguf.bos_token or "", model.gguf.eos_token or "")
    return ""


@dataclass(frozen=True)
class ToolPrompt:
    """A chat request's prompt with its tools, and how to read the answer."""

    prompt: str
    format: OutputFormat | None  # the grammar of a forced call
    opener: str
    plan: ToolPlan

    def splitter(self) -> TextSplitter:
        return self.plan.splitter(self.opener)


async def tool_prompt(model: ResolvedModel, messages: list[dict[str, Any]], plan: ToolPlan, *,
                      fit: PromptFit | None = None) -> ToolPrompt:
    """Render `messages` with the tools the plan offers. A forced call's prompt ends with the
    template's opener, so the constrained JSON comes where the model would write a call.
    With `fit`, a conversation too long for the context loses its oldest messages first."""
    opener = call_opener(model) if plan.offered() else ""

    def render(drop: int) -> str:
        prompt = model.render_chat(messages, tools=plan.offered(), drop=drop)
        return prompt + opener if plan.forced and opener.strip() else prompt

    if fit is None:
        prompt = render(0)
    else:
        prompt = await fit_conversation(render, model.cut_points(messages), fit.limit, fit.count)
    return ToolPrompt(prompt, plan.output_format(), opener, plan)
