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
from gateway.prompt_fit import ConversationFitter
from gateway.requests import keep_alive_seconds, lacks_capability, reject_unsupported
from gateway.responses_tools import FunctionCallItem, add_tool_item, decode_item, function_call_item
from gateway.structured import responses_text_format
from gateway.tool_calls import ParsedCall, PlainText, TextSplitter, split_whole
from gateway.tool_template import tool_prompt
from gateway.tools import ToolPlan, ToolTurns, read_plan, read_tools
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
    input: str | list[dict[str, Any]]  # messages, and function_call / function_call_output items
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
    output: list[OutputMessage | FunctionCallItem]
    instructions: str | None
    max_output_tokens: int | None
    temperature: float
    top_p: float
    usage: ResponseUsage | None = None
    incomplete_details: dict[str, str] | None = None
    error: dict[str, str] | None = None
    object: Literal["response"] = "response"
    parallel_tool_calls: bool = False
    tool_choice: str | dict[str, Any] = "none"
    tools: list[Any] = []
    text: dict[str, Any] = msgspec.field(default_factory=lambda: {"format": {"type": "text"}})
    metadata: dict[str, str] = {}


def _messages(body: ResponsesRequest) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = [{"role": "system", "content": body.instructions}] if body.instructions else []
    if isinstance(body.input, str):
        return [*messages, {"role": "user", "content": body.input}]
    turns = ToolTurns()
    for index, raw in enumerate(body.input):
        if raw.get("type") in ("function_call", "function_call_output"):
            add_tool_item(messages, decode_item(raw, index), turns)
            continue
        try:
            item = msgspec.convert(raw, type=InputMessage)
        except msgspec.ValidationError as exc:
            raise bad_request(f"{exc} (in input[{index}])", param=f"input[{index}]") from exc
        if isinstance(item.content, str):
            text = item.content
        else:
            for part in item.content:
                if part.type == "input_image":
                    raise lacks_capability(body.model, "vision", "input")
                if part.type not in {"input_text", "output_text"}:
                    raise bad_request(f"input part type '{part.type}' is not supported by this model", param="input")
            text = "".join(part.text or "" for part in item.content)
        messages.append(turns.message("system" if item.role == "developer" else item.role, text))
    return messages


def _check(body: ResponsesRequest) -> ToolPlan:
    if body.previous_response_id or body.conversation:
        raise bad_request("this server is stateless: 'previous_response_id' and 'conversation' are not supported",
                          param="previous_response_id")
    reject_unsupported(reasoning=body.reasoning, top_logprobs=body.top_logprobs)
    if body.max_output_tokens is not None and body.max_output_tokens < 1:
        raise bad_request("'max_output_tokens' must be at least 1", param="max_output_tokens")
    tools = read_tools(body.tools, flat=True)
    # "none" and "auto" without tools ask for nothing: accepted, as this route always has.
    choice = None if not tools and body.tool_choice in ("none", "auto") else body.tool_choice
    return read_plan(tools, choice, parallel=body.parallel_tool_calls)


@post("/v1/responses", status_code=200)
async def responses(request: Request[Any, Any, Any], catalog: Catalog, queue: JobQueue,
                    fitter: ConversationFitter) -> Response[bytes] | Stream:
    body: ResponsesRequest = decode_body(await request.body(), ResponsesRequest)
    plan = _check(body)
    model = await catalog.resolve(body.model)
    messages = _messages(body)
    if not messages:
        raise bad_request("'input' is empty", param="input")
    output_format, echoed_format = responses_text_format(body.text)
    temperature = 1.0 if body.temperature is None else body.temperature
    top_p = 1.0 if body.top_p is None else body.top_p
    fields = {"temperature": temperature, "top_p": top_p, "num_predict": body.max_output_tokens,
              "num_ctx": body.num_ctx, "top_k": body.top_k, "seed": body.seed}
    job = Job(
        id=new_job_id(), model=body.model, **model.record.load_target(), prompt="",
        options=merge_options(model.record.parameters, body.options,
                              {k: v for k, v in fields.items() if v is not None}),
        keep_alive=keep_alive_seconds(body.keep_alive), created=time.time(), user=body.user,
    )
    prepared = await tool_prompt(model, messages, plan, fit=fitter.for_job(model, job))
    if prepared.format is not None and output_format is not None:
        raise bad_request("'text.format' cannot be combined with a forced tool call ('tool_choice')",
                          param="text.format")
    job.prompt = prepared.prompt
    job.format = prepared.format or output_format
    shell = ResponseObject(
        id=f"resp_{secrets.token_hex(16)}", created_at=int(time.time()), model=body.model, status="in_progress",
        output=[], instructions=body.instructions, max_output_tokens=body.max_output_tokens,
        temperature=temperature, top_p=top_p, metadata=body.metadata or {},
        tools=body.tools or [], tool_choice=body.tool_choice or ("auto" if plan.tools else "none"),
        parallel_tool_calls=bool(plan.tools) and plan.parallel,
        text={**(body.text or {}), "format": echoed_format},
    )
    text = prepared.splitter()
    generation, first = await start(queue, job, request)
    if body.stream:
        return Stream(_events(generation, first, shell, text), media_type="text/event-stream",
                      headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
    outcome = await generation.watch(request.receive, generation.collect(first))
    content, calls = split_whole(outcome.text, text)
    message = _message(f"msg_{secrets.token_hex(16)}", content, cut=outcome.done.done_reason == "length")
    output = ([message] if content or not calls else []) + [function_call_item(c) for c in calls]
    return Response(_encode(_finished(shell, output, outcome.done)), media_type="application/json")


def _message(item_id: str, text: str, *, cut: bool) -> OutputMessage:
    return OutputMessage(id=item_id, status="incomplete" if cut else "completed", content=[OutputText(text)])


def _finished(shell: ResponseObject, output: list[OutputMessage | FunctionCallItem], done: Done) -> ResponseObject:
    cut = done.done_reason == "length"
    return msgspec.structs.replace(
        shell, status="incomplete" if cut else "completed", output=output,
        incomplete_details={"reason": "max_output_tokens"} if cut else None,
        usage=ResponseUsage(input_tokens=done.prompt_eval_count, output_tokens=done.eval_count,
                            total_tokens=done.prompt_eval_count + done.eval_count,
                            input_tokens_details={"cached_tokens": done.prompt_cached_count, "cache_write_tokens": 0}),
    )


async def _events(generation: Generation, first: Event, shell: ResponseObject,
                  text: TextSplitter) -> AsyncIterator[bytes]:
    sequence = 0

    def event(kind: str, **payload: Any) -> bytes:
        nonlocal sequence
        sequence += 1
        data = {"type": kind, "sequence_number": sequence - 1, **payload}
        return b"event: " + kind.encode() + b"\ndata: " + _encode(data) + b"\n\n"

    item_id = f"msg_{secrets.token_hex(16)}"
    output: list[OutputMessage | FunctionCallItem] = []
    parts: list[str] | None = None  # the message's text, once its item is open
    where: dict[str, Any] = {}

    def open_message() -> list[bytes]:
        nonlocal parts, where
        parts, where = [], {"item_id": item_id, "output_index": len(output), "content_index": 0}
        return [event("response.output_item.added", output_index=len(output),
                      item=OutputMessage(id=item_id, status="in_progress", content=[])),
                event("response.content_part.added", part=OutputText(""), **where)]

    def close_message(cut: bool) -> list[bytes]:
        nonlocal parts
        if parts is None:
            return []
        whole, parts = "".join(parts), None
        message = _message(item_id, whole, cut=cut)
        output.append(message)
        return [event("response.output_text.done", text=whole, logprobs=[], **where),
                event("response.content_part.done", part=OutputText(whole), **where),
                event("response.output_item.done", output_index=where["output_index"], item=message)]

    def call_events(call: ParsedCall) -> list[bytes]:
        item = function_call_item(call)
        at = {"item_id": item.id, "output_index": len(output)}
        output.append(item)
        return [event("response.output_item.added", output_index=at["output_index"],
                      item=function_call_item(call, "in_progress", item.id)),
                event("response.function_call_arguments.delta", delta=item.arguments, **at),
                event("response.function_call_arguments.done", arguments=item.arguments, name=item.name, **at),
                event("response.output_item.done", output_index=at["output_index"], item=item)]

    yield event("response.created", response=shell)
    yield event("response.in_progress", response=shell)
    if isinstance(text, PlainText):  # no tools: the message opens at once, as it always has
        for line in open_message():
            yield line
    async for item in generation.rest(first):
        if isinstance(item, Token | Done):
            pieces = text.feed(item.text) if isinstance(item, Token) else text.finish()
            for piece in pieces:
                if isinstance(piece, str):
                    if parts is None and piece:
                        for line in open_message():
                            yield line
                    if parts is not None:
                        parts.append(piece)
                        yield event("response.output_text.delta", delta=piece, logprobs=[], **where)
                else:  # a call: the text before it is complete (nothing follows a call but calls)
                    for line in [*close_message(False), *call_events(piece)]:
                        yield line
        if isinstance(item, Done):
            if not output and parts is None:  # nothing at all: one empty message, as unstreamed
                for line in open_message():
                    yield line
            for line in close_message(item.done_reason == "length"):
                yield line
            final = _finished(shell, output, item)
            yield event("response.incomplete" if final.status == "incomplete" else "response.completed",
                        response=final)
        elif not isinstance(item, Token):
            failed = msgspec.structs.replace(shell, status="failed",
                                             error={"code": "server_error", "message": item.message})
            yield event("response.failed", response=failed)

