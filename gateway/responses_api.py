"""OpenAI's Responses API, stateless (as Ollama serves it): POST /v1/responses.

One request is one chat job; the answer is one `message` output item with one
`output_text` part, streamed as `response.*` SSE events when asked.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import AsyncIterator
from typing import Any, Literal

import msgspec
from litestar import Request, Response, post
from litestar.response import Stream

from gateway.catalog import Catalog
from gateway.errors import bad_request, decode_body
from gateway.generation import Generation, start
from gateway.jobs import JobQueue, new_job_id
from gateway.options import merge_options
from gateway.requests import keep_alive_seconds, reject_unsupported
from gateway.structured import responses_text_format
from herd.protocol import Done, Event, Job, Token

_encode = msgspec.json.Encoder().encode


class InputPart(msgspec.Struct, forbid_unknown_fields=True):
    type: str
    text: str | None = None
    image_url: str | None = None
    file_id: str | None = None
    detail: str | None = None
    annotations: list[Any] | None = None


class InputMessage(msgspec.Struct, forbid_unknown_fields=True):
    role: str
    content: str | list[InputPart]
    type: Literal["message"] = "message"
    id: str | None = None
    status: str | None = None


class ResponsesRequest(msgspec.Struct, forbid_unknown_fields=True):
    model: str
    input: str | list[InputMessage]
    instructions: str | None = None
    max_output_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    stream: bool = False
    text: dict[str, Any] | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    previous_response_id: str | None = None
    conversation: str | dict[str, Any] | None = None
    reasoning: dict[str, Any] | None = None
    store: bool | None = None  # accepted: nothing is ever stored (stateless)
    metadata: dict[str, str] | None = None
    user: str | None = None
    truncation: str | None = None
    include: list[str] | None = None
    top_logprobs: int | None = None
    # Herd extensions, as extra_body sends them.
    keep_alive: str | float | int | None = None
    num_ctx: int | None = None
    top_k: int | None = None
    seed: int | None = None
    options: dict[str, Any] | None = None


class OutputText(msgspec.Struct):
    text: str
    type: Literal["output_text"] = "output_text"
    annotations: list[Any] = []


class OutputMessage(msgspec.Struct):
    id: str
    status: Literal["in_progress", "completed", "incomplete"]
    content: list[OutputText]
    role: Literal["assistant"] = "assistant"
    type: Literal["message"] = "message"


class ResponseUsage(msgspec.Struct):
    input_tokens: int
    output_tokens: int
    total_tokens: int
    input_tokens_details: dict[str, int] = msgspec.field(
        default_factory=lambda: {"cached_tokens": 0, "cache_write_tokens": 0})
    output_tokens_details: dict[str, int] = msgspec.field(default_factory=lambda: {"reasoning_tokens": 0})


class ResponseObject(msgspec.Struct):
    id: str
    created_at: int
    model: str
    status: Literal["in_progress", "completed", "incomplete", "failed"]
    output: list[OutputMessage]
    instructions: str | None
    max_output_tokens: int | None
    temperature: float
    top_p: float
    usage: ResponseUsage | None = None
    incomplete_details: dict[str, str] | None = None
    error: dict[str, str] | None = None
    object: Literal["response"] = "response"
    parallel_tool_calls: bool = False
    tool_choice: str = "none"
    tools: list[Any] = []
    text: dict[str, Any] = msgspec.field(default_factory=lambda: {"format": {"type": "text"}})
    metadata: dict[str, str] = {}


def _messages(body: ResponsesRequest) -> list[dict[str, str]]:
    messages = [{"role": "system", "content": body.instructions}] if body.instructions else []
    if isinstance(body.input, str):
        return [*messages, {"role": "user", "content": body.input}]
    for item in body.input:
        if isinstance(item.content, str):
            text = item.content
        else:
            for part in item.content:
                if part.type not in {"input_text", "output_text"}:
                    raise bad_request(f"input part type '{part.type}' is not supported by this model", param="input")
            text = "".join(part.text or "" for part in item.content)
        messages.append({"role": "system" if item.role == "developer" else item.role, "content": text})
    return messages


def _check(body: ResponsesRequest) -> None:
    if body.previous_response_id or body.conversation:
        raise bad_request("this server is stateless: 'previous_response_id' and 'conversation' are not supported",
                          param="previous_response_id")
    reject_unsupported(tools=body.tools, tool_choice=None if body.tool_choice in (None, "none", "auto") else
                       body.tool_choice, reasoning=body.reasoning, top_logprobs=body.top_logprobs)
    if body.max_output_tokens is not None and body.max_output_tokens < 1:
        raise bad_request("'max_output_tokens' must be at least 1", param="max_output_tokens")


@post("/v1/responses", status_code=200)
async def responses(request: Request[Any, Any, Any], catalog: Catalog, queue: JobQueue) -> Response[bytes] | Stream:
    body: ResponsesRequest = decode_body(await request.body(), ResponsesRequest)
    _check(body)
    model = await catalog.resolve(body.model)
    messages = _messages(body)
    if not messages:
        raise bad_request("'input' is empty", param="input")
    output, echoed_format = responses_text_format(body.text)
    temperature = 1.0 if body.temperature is None else body.temperature
    top_p = 1.0 if body.top_p is None else body.top_p
    fields = {"temperature": temperature, "top_p": top_p, "num_predict": body.max_output_tokens,
              "num_ctx": body.num_ctx, "top_k": body.top_k, "seed": body.seed}
    job = Job(
        id=new_job_id(), model=body.model, digest=model.record.weights_digest, prompt=model.render_chat(messages),
        options=merge_options(model.record.parameters, body.options,
                              {k: v for k, v in fields.items() if v is not None}),
        keep_alive=keep_alive_seconds(body.keep_alive), created=time.time(), format=output, user=body.user,
    )
    shell = ResponseObject(
        id=f"resp_{secrets.token_hex(16)}", created_at=int(time.time()), model=body.model, status="in_progress",
        output=[], instructions=body.instructions, max_output_tokens=body.max_output_tokens,
        temperature=temperature, top_p=top_p, metadata=body.metadata or {},
        text={**(body.text or {}), "format": echoed_format},
    )
    generation, first = await start(queue, job, request.receive)
    if body.stream:
        return Stream(_events(generation, first, shell), media_type="text/event-stream",
                      headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
    outcome = await generation.watch(request.receive, generation.collect(first))
    return Response(_encode(_finished(shell, f"msg_{secrets.token_hex(16)}", outcome.text, outcome.done)),
                    media_type="application/json")


def _finished(shell: ResponseObject, item_id: str, text: str, done: Done) -> ResponseObject:
    cut = done.done_reason == "length"
    message = OutputMessage(id=item_id, status="incomplete" if cut else "completed", content=[OutputText(text)])
    return msgspec.structs.replace(
        shell, status="incomplete" if cut else "completed", output=[message],
        incomplete_details={"reason": "max_output_tokens"} if cut else None,
        usage=ResponseUsage(input_tokens=done.prompt_eval_count, output_tokens=done.eval_count,
                            total_tokens=done.prompt_eval_count + done.eval_count),
    )


async def _events(generation: Generation, first: Event, shell: ResponseObject) -> AsyncIterator[bytes]:
    sequence = 0

    def event(kind: str, **payload: Any) -> bytes:
        nonlocal sequence
        sequence += 1
        data = {"type": kind, "sequence_number": sequence - 1, **payload}
        return b"event: " + kind.encode() + b"\ndata: " + _encode(data) + b"\n\n"

    item_id = f"msg_{secrets.token_hex(16)}"
    where = {"item_id": item_id, "output_index": 0, "content_index": 0}
    yield event("response.created", response=shell)
    yield event("response.in_progress", response=shell)
    yield event("response.output_item.added", output_index=0,
                item=OutputMessage(id=item_id, status="in_progress", content=[]))
    yield event("response.content_part.added", part=OutputText(""), **where)
    parts: list[str] = []
    async for item in generation.rest(first):
        if isinstance(item, Token):
            parts.append(item.text)
            yield event("response.output_text.delta", delta=item.text, logprobs=[], **where)
        elif isinstance(item, Done):
            text = "".join(parts)
            final = _finished(shell, item_id, text, item)
            yield event("response.output_text.done", text=text, logprobs=[], **where)
            yield event("response.content_part.done", part=OutputText(text), **where)
            yield event("response.output_item.done", output_index=0, item=final.output[0])
            yield event("response.incomplete" if final.status == "incomplete" else "response.completed",
                        response=final)
        else:
            failed = msgspec.structs.replace(shell, status="failed",
                                             error={"code": "server_error", "message": item.message})
            yield event("response.failed", response=failed)
