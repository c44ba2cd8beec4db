"""The gateway's view of the model store: resolve names, render prompts, describe models.

Models are looked up on every request (`herd create` or another gateway may change them; the
store reuses a record while its manifest and blobs are unchanged); what is read
from a GGUF is cached by its content digest.
"""

from __future__ import annotations

import asyncio
import dataclasses
from functools import lru_cache
from typing import Any, TypeGuard

from gateway import wire_ollama as wire
from gateway.chat_template import TemplateError, render_jinja
from gateway.errors import ApiError, bad_request, model_not_found
from gateway.requests import lacks_capability
from herd.chat_prompt import render_fill_in_middle, render_ollama_template
from herd.gotemplate import TemplateError as GoTemplateError
from herd.gotemplate import parse as parse_go_template
from herd.gotemplate.ollama import variables
from herd.store.gguf import GGUFInfo, read_gguf
from herd.store.names import InvalidModelName, parse_name
from herd.store.store import ModelRecord, ModelStore

_GGUF_CACHE = 32
_gguf_by_digest: dict[str, GGUFInfo] = {}  # keyed by the weights' content digest: never stale


async def _gguf_info(record: ModelRecord) -> GGUFInfo:
    """What the GGUF says, read once per weights digest (off the event loop); later requests
    take it from memory without a thread hop."""
    info = _gguf_by_digest.get(record.weights_digest)
    if info is None:
        info = await asyncio.to_thread(read_gguf, str(record.weights_path))
        if len(_gguf_by_digest) >= _GGUF_CACHE:
            _gguf_by_digest.clear()
        _gguf_by_digest[record.weights_digest] = info
    return info


@dataclasses.dataclass(frozen=True)
class ResolvedModel:
    record: ModelRecord
    gguf: GGUFInfo

    @property
    def vocab_size(self) -> int | None:
        """Tokens in the vocabulary, when the GGUF lists them (it always does for llama.cpp)."""
        tokens = self.gguf.metadata.get("tokenizer.ggml.tokens")
        if isinstance(tokens, list):
            return len(tokens)
        return self.gguf.omitted_arrays.get("tokenizer.ggml.tokens")

    def _template_messages(self, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Modelfile MESSAGEs first; its SYSTEM unless the request brings its own."""
        head: list[dict[str, Any]] = []
        if self.record.system and not (messages and messages[0].get("role") == "system"):
            head.append({"role": "system", "content": self.record.system})
        head.extend(dict(m) for m in self.record.messages)
        return head + messages

    def cut_points(self, messages: list[dict[str, Any]]) -> list[int]:
        """Where a conversation too long for the context may start (see `render_chat`'s `drop`),
        from 0 to its last message. Any message, as in Ollama, for the Modelfile's Go template;
        for a GGUF's Jinja template only a user message (many raise unless roles alternate from
        a user's)."""
        full = self._template_messages(messages)
        last = len(full) - 1
        if self.record.template or not self.gguf.chat_template:
            return list(range(last + 1))
        return [0, *(i for i in range(1, last) if full[i].get("role") == "user"), last] if last > 0 else [0]

    def render_chat(self, messages: list[dict[str, Any]], *, template: str | None = None,
                    tools: list[dict[str, Any]] | None = None, drop: int = 0) -> str:
        """The prompt for a conversation: a Go TEMPLATE (the request's, else the Modelfile's)
        the way Ollama renders it, else the GGUF's Jinja chat template. `tools` (function tools,
        `{"type": "function", "function": {...}}`) are the Go template's `.Tools` and Jinja's `tools`.
        `drop`: leave out the conversation's first `drop` messages but for the system ones (a
        conversation cut to fit the context, as Ollama cuts it)."""
        full = self._template_messages(messages)
        if drop:
            full = [m for m in full[:drop] if m.get("role") == "system"] + full[drop:]
        go_source = template or self.record.template
        if go_source:
            try:
                return render_ollama_template(go_source, full, tools=tools)
            except GoTemplateError as exc:
                raise bad_request(f"template: {exc}", param="template") from exc
        source = self.gguf.chat_template
        if not source:  # no template at all: Ollama's default is the bare prompt
            return "\n".join(str(m.get("content", "")) for m in full)
        try:
            return render_jinja(source, full, bos_token=self.gguf.bos_token or "",
                                eos_token=self.gguf.eos_token or "", tools=tools)
        except TemplateError as exc:
            raise bad_request(str(exc)) from exc

    def render_generate(self, prompt: str, system: str | None, *, template: str | None = None) -> str:
        messages: list[dict[str, Any]] = []
        if system:
            messages.append({"role": "system", "content": system})
        messages.append({"role": "user", "content": prompt})
        return self.render_chat(messages, template=template)

    def render_fill_in_middle(self, prompt: str, suffix: str, *, template: str | None = None) -> str:
        """The prompt for a `suffix` request (code completion between prompt and suffix), or a 400
        when the template (the request's, else the Modelfile's) cannot place a suffix."""
        source = template or self.record.template
        if not _places_a_suffix(source):
            raise lacks_capability(self.record.name.display(), "insert", "suffix")
        try:
            return render_fill_in_middle(source, prompt, suffix)
        except GoTemplateError as exc:
            raise bad_request(f"template: {exc}", param="template") from exc

    @property
    def supports_tools(self) -> bool:
        """Ollama's `tools` capability: the template reads the tools (`.Tools`; Jinja `tools`)."""
        if self.record.template:
            return "tools" in _go_variables(self.record.template)
        return "tools" in (self.gguf.chat_template or "")

    @property
    def capabilities(self) -> list[str]:
        """Ollama's capability names, as /api/show lists them. `insert` (fill in the middle) comes
        from a TEMPLATE that uses `.Suffix`. No `vision`: Herd loads no image projectors."""
        found = ["completion"]
        if self.supports_tools:
            found.append("tools")
        if _places_a_suffix(self.record.template):
            found.append("insert")
        return found

    @property
    def template_in_use(self) -> str:
        """What `herd show` reports: which template renders this model's prompts."""
        if self.record.template:
            return "modelfile"
        return "gguf" if self.gguf.chat_template else "none"


@lru_cache(maxsize=64)
def _go_variables(source: str) -> frozenset[str]:
    """The (lower-cased) top-level fields a Go template reads, as Ollama's Template.Vars()."""
    try:
        return frozenset(variables(parse_go_template(source)))
    except GoTemplateError:
        return frozenset()


def _places_a_suffix(template: str | None) -> TypeGuard[str]:
    """Ollama's `insert` capability: a Go template that reads `.Suffix`."""
    return template is not None and "suffix" in _go_variables(template)


def checked_name(name: str, param: str = "model") -> str:
    """A model name from a request, or a 400 saying what is wrong with it."""
    if not name:
        raise ApiError(400, f"{param} is required", param=param)
    try:
        parse_name(name)
    except InvalidModelName as exc:
        raise bad_request(str(exc), param=param) from exc
    return name


class Catalog:
    def __init__(self, store: ModelStore) -> None:
        self.store = store

    def _record(self, name: str) -> ModelRecord:
        record = self.store.get(checked_name(name))
        if record is None:
            raise model_not_found(name)
        return record

    def find(self, name: str) -> ModelRecord | None:
        """The model by that name, or None (also for a name that is not valid)."""
        try:
            return self.store.get(name) if name else None
        except (InvalidModelName, ValueError):
            return None

    async def resolve(self, name: str) -> ResolvedModel:
        record = self._record(name)
        try:
            info = await _gguf_info(record)
        except (OSError, ValueError) as exc:
            raise ApiError(500, f"model '{name}' is unreadable: {exc}") from exc
        return ResolvedModel(record, info)

    async def list(self) -> list[ModelRecord]:
        return await asyncio.to_thread(self.store.list)

    async def delete(self, name: str) -> None:
        record = self._record(name)
        await asyncio.to_thread(self.store.delete, record.name.full())

    async def show(self, model: ResolvedModel, *, verbose: bool) -> wire.ShowResponse:
        record = model.record
        info = dict(model.gguf.metadata)
        if not verbose:
            info = {k: v for k, v in info.items() if not isinstance(v, list)}
        info["general.parameter_count"] = model.gguf.parameter_count
        return wire.ShowResponse(
            modelfile=record.modelfile(),
            parameters=_parameters_text(record.parameters),
            template=record.template or model.gguf.chat_template or "",
            details=record.details,
            model_info=info,
            capabilities=model.capabilities,
            modified_at=record.modified_at.isoformat(),
            template_source=model.template_in_use,
            license="\n".join(record.licenses) or None,
            system=record.system,
        )


def _parameters_text(parameters: dict[str, Any]) -> str:
    """Ollama's `parameters` text: one `name value` line per value, stop strings quoted."""
    lines: list[str] = []
    for name, value in parameters.items():
        for item in value if isinstance(value, list) else [value]:
            shown = f'"{item}"' if isinstance(item, str) else str(item).lower() if isinstance(item, bool) else item
            lines.append(f"{name:<30} {shown}")
    return "\n".join(lines)
