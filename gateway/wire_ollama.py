"""Request and response bodies of the Ollama API (`/api/...`), as Ollama defines them.

Every field Ollama accepts is declared, so its clients work unchanged; a field nobody
defines is a 400 naming it (msgspec's `forbid_unknown_fields`), never silently dropped.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

from herd.store.store import ModelDetails

KeepAlive = str | float | int | None


class ToolFunctionCall(msgspec.Struct, omit_defaults=True):
    name: str
    arguments: dict[str, Any] = {}
    index: int | None = None


class ToolCall(msgspec.Struct, omit_defaults=True):
    function: ToolFunctionCall
    id: str | None = None


class Message(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    role: str
    content: str = ""
    thinking: str | None = None
    images: list[str] | None = None
    tool_calls: list[ToolCall] | None = None
    tool_name: str | None = None
    tool_call_id: str | None = None


class GenerateRequest(msgspec.Struct, forbid_unknown_fields=True):
    model: str
    prompt: str = ""
    suffix: str = ""
    system: str | None = None
    template: str | None = None
    context: list[int] | None = None
    stream: bool = True
    raw: bool = False
    format: str | dict[str, Any] | None = None
    keep_alive: KeepAlive = None
    images: list[str] | None = None
    options: dict[str, Any] | None = None
    think: bool | str | None = None
    truncate: bool | None = None  # None: true, as in Ollama (cut a prompt longer than the context)
    shift: bool | None = None  # None: true, as in Ollama (shift a full context rather than stop)
    logprobs: bool | None = None
    top_logprobs: int | None = None


class ChatRequest(msgspec.Struct, forbid_unknown_fields=True):
    model: str
    messages: list[Message] = []
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None  # Herd: OpenAI's tool_choice (Ollama has none)
    format: str | dict[str, Any] | None = None
    options: dict[str, Any] | None = None
    stream: bool = True
    keep_alive: KeepAlive = None
    think: bool | str | None = None
    truncate: bool | None = None  # None: true, as in Ollama (cut a prompt longer than the context)
    shift: bool | None = None  # None: true, as in Ollama (shift a full context rather than stop)
    logprobs: bool | None = None
    top_logprobs: int | None = None


class ModelRequest(msgspec.Struct, forbid_unknown_fields=True):
    """/api/show and /api/delete; Ollama also accepts the old `name` spelling."""

    model: str = ""
    name: str = ""
    verbose: bool = False
    # Accepted on /api/show as Ollama does (its ShowRequest), though they change nothing.
    system: str | None = None
    template: str | None = None
    options: dict[str, Any] | None = None

    @property
    def target(self) -> str:
        return self.model or self.name


class TokenLogprob(msgspec.Struct, omit_defaults=True):
    token: str
    logprob: float
    bytes: list[int] | None = None


class Logprob(msgspec.Struct, omit_defaults=True):
    """A generated token's log probability, with the most likely alternatives if asked."""

    token: str
    logprob: float
    bytes: list[int] | None = None
    top_logprobs: list[TokenLogprob] | None = None


class GenerateChunk(msgspec.Struct, omit_defaults=True):
    model: str
    created_at: str
    response: str
    done: bool
    done_reason: str | None = None
    context: list[int] | None = None
    total_duration: int | None = None
    load_duration: int | None = None
    prompt_eval_count: int | None = None
    prompt_eval_duration: int | None = None
    eval_count: int | None = None
    eval_duration: int | None = None
    logprobs: list[Logprob] | None = None


class ChatMessageOut(msgspec.Struct, omit_defaults=True):
    role: Literal["assistant"]
    content: str
    tool_calls: list[ToolCall] | None = None


class ChatChunk(msgspec.Struct, omit_defaults=True):
    model: str
    created_at: str
    message: ChatMessageOut
    done: bool
    done_reason: str | None = None
    total_duration: int | None = None
    load_duration: int | None = None
    prompt_eval_count: int | None = None
    prompt_eval_duration: int | None = None
    eval_count: int | None = None
    eval_duration: int | None = None
    logprobs: list[Logprob] | None = None


class ListedModel(msgspec.Struct):
    name: str
    model: str
    modified_at: str
    size: int
    digest: str
    details: ModelDetails


class TagsResponse(msgspec.Struct):
    models: list[ListedModel]


class RunningModel(msgspec.Struct):
    name: str
    model: str
    size: int
    digest: str
    details: ModelDetails
    expires_at: str
    size_vram: int
    context_length: int
    replicas: int  # Herd: how many workers hold it
    workers: list[str]  # Herd: their ids
    parallel: int  # Herd: sequences each replica decodes at once
    busy: int  # Herd: sequences running now, over all replicas


class PsResponse(msgspec.Struct):
    models: list[RunningModel]


class ShowResponse(msgspec.Struct, omit_defaults=True):
    modelfile: str
    parameters: str
    template: str
    details: ModelDetails
    model_info: dict[str, Any]
    capabilities: list[str]
    modified_at: str
    template_source: str  # Herd: "modelfile" (Go template), "gguf" (Jinja chat template) or "none"
    license: str | None = None
    system: str | None = None


class VersionResponse(msgspec.Struct):
    version: str


class ErrorBody(msgspec.Struct):
    error: str
