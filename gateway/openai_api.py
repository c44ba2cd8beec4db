"""The OpenAI API: /v1/chat/completions, /v1/completions (SSE streams), /v1/models."""

from __future__ import annotations

import datetime
import secrets
import time
from collections.abc import AsyncIterator
from typing import Any

import msgspec
from litestar import Request, Response, get, post
from litestar.response import Stream

from gateway import wire_openai as wire
from gateway.catalog import Catalog, ResolvedModel
from gateway.errors import bad_request, decode_body, model_not_found
from gateway.generation import Generation, Outcome, start
from gateway.jobs import JobQueue, new_job_id
from gateway.logprobs import MAX_TOP_LOGPROBS, chat_logprobs, completion_logprobs
from gateway.options import merge_options
from gateway.prompt_fit import ConversationFitter
from gateway.requests import keep_alive_seconds, lacks_capability, logit_bias, reject_unsupported
from gateway.structured import openai_response_format
from gateway.tool_calls import ParsedCall, TextSplitter, grouped, split_whole
from gateway.tool_template import tool_prompt
from gateway.tools import ToolTurns, read_plan, read_tools
from herd.protocol import Done, Event, Job, OutputFormat, Token
from herd.store.store import ModelRecord

_encode = msgspec.json.Encoder().encode
SSE = "text/event-stream"


def _usage(done: Done) -> wire.Usage:
    return wire.Usage(prompt_tokens=done.prompt_eval_count, completion_tokens=done.eval_count,
                      total_tokens=done.prompt_eval_count + done.eval_count,
                      prompt_tokens_details=wire.PromptTokensDetails(cached_tokens=done.prompt_cached_count))


def _finish_reason(done: Done) -> wire.FinishReason:
    return "length" if done.done_reason == "length" else "stop"


def _sse(payload: Any) -> bytes:
    return b"data: " + _encode(payload) + b"\n\n"


def _error_event(message: str, status: int) -> bytes:
    kind = "invalid_request_error" if 400 <= status < 500 else "api_error"
    return _sse(wire.ErrorBody(error=wire.ErrorDetail(message=message, type=kind)))


def _sampling(body: wire.ChatCompletionRequest | wire.CompletionRequest, max_tokens: int | None) -> dict[str, Any]:
    """OpenAI's field names onto the job's options. Ollama's defaults for /v1 apply:
    temperature and top_p are 1.0 when the request does not set them."""
    stop = [body.stop] if isinstance(body.stop, str) else body.stop
    fields: dict[str, Any] = {
        "temperature": 1.0 if body.temperature is None else body.temperature,
        "top_p": 1.0 if body.top_p is None else body.top_p,
        "num_predict": max_tokens,
        "seed": body.seed,
        "stop": stop,
        "frequency_penalty": body.frequency_penalty,
        "presence_penalty": body.presence_penalty,
        "top_k": body.top_k,
        "min_p": body.min_p,
        "repeat_penalty": body.repeat_penalty,
        "num_ctx": body.num_ctx,
    }
    return {**(body.options or {}), **{k: v for k, v in fields.items() if v is not None}}


def _check_common(body: wire.ChatCompletionRequest | wire.CompletionRequest) -> None:
    if body.n not in (None, 1):
        raise bad_request("'n' other than 1 is not supported", param="n")
    if body.max_tokens is not None and body.max_tokens < 1:
        raise bad_request("'max_tokens' must be at least 1", param="max_tokens")


def _check_chat_only_fields(body: wire.ChatCompletionRequest) -> None:
    """Fields with nothing to do in a stateless text-only server: accepted when they ask for
    what Herd does anyway, else a 400 naming them (never dropped). `store` and `metadata` are
    accepted as in /v1/responses: nothing is ever stored."""
    if body.modalities not in (None, [], ["text"]):
        raise bad_request("only the 'text' modality is supported", param="modalities")
    if body.service_tier not in (None, "auto", "default"):
        raise bad_request("'service_tier' must be 'auto' or 'default' on this server", param="service_tier")


def _chat_logprobs(body: wire.ChatCompletionRequest) -> int | None:
    """`logprobs: true` and `top_logprobs` (0-20) → alternatives per token; None: off."""
    if body.logprobs is not None and not isinstance(body.logprobs, bool):
        raise bad_request("'logprobs' must be a boolean", param="logprobs")
    top = body.top_logprobs
    if top is not None and not 0 <= top <= MAX_TOP_LOGPROBS:
        raise bad_request(f"'top_logprobs' must be between 0 and {MAX_TOP_LOGPROBS}", param="top_logprobs")
    if top is not None and not body.logprobs:
        raise bad_request("'top_logprobs' requires 'logprobs' to be true", param="top_logprobs")
    return (top or 0) if body.logprobs else None


def _completion_logprobs(body: wire.CompletionRequest) -> int | None:
    """The legacy `logprobs: N`: each token's logprob and the N most likely (0-20)."""
    value = body.logprobs
    if value is None or value is False:
        return None
    if isinstance(value, bool) or not 0 <= value <= MAX_TOP_LOGPROBS:
        raise bad_request(f"'logprobs' must be an integer between 0 and {MAX_TOP_LOGPROBS}", param="logprobs")
    return value


def _job(model: ResolvedModel, body: wire.ChatCompletionRequest | wire.CompletionRequest, prompt: str,
         max_tokens: int | None, *, output: OutputFormat | None = None, logprobs: int | None = None) -> Job:
    return Job(
        id=new_job_id(),
        model=body.model,
        **model.record.load_target(),
        prompt=prompt,
        options=merge_options(model.record.parameters, _sampling(body, max_tokens)),
        keep_alive=keep_alive_seconds(body.keep_alive),
        created=time.time(),
        format=output,
        logprobs=logprobs,
        logit_bias=logit_bias(body.logit_bias, model.vocab_size),
        user=body.user,
    )


def _message_text(message: wire.ChatMessage, model: str) -> str:
    if message.content is None or isinstance(message.content, str):
        return message.content or ""
    texts: list[str] = []
    for part in message.content:
        if part.type == "text":
            texts.append(part.text or "")
        elif part.type == "image_url":
            raise lacks_capability(model, "vision", "messages")
        else:
            raise bad_request(f"content part type '{part.type}' is not supported by this model",
                              param="messages")
    return "\n".join(texts)


@post("/v1/chat/completions", status_code=200)
async def chat_completions(request: Request[Any, Any, Any], catalog: Catalog, queue: JobQueue,
                           fitter: ConversationFitter) -> Response[bytes] | Stream:
    body: wire.ChatCompletionRequest = decode_body(await request.body(), wire.ChatCompletionRequest)
    if not body.messages:
        raise bad_request("[] is too short - 'messages'", param="messages")
    model = await catalog.resolve(body.model)
    _check_common(body)
    if body.reasoning_effort and body.reasoning_effort != "none":
        raise lacks_capability(body.model, "thinking", "reasoning_effort")
    _check_chat_only_fields(body)
    output = openai_response_format(body.response_format)
    logprobs = _chat_logprobs(body)
    plan = read_plan(read_tools(body.tools), body.tool_choice, parallel=body.parallel_tool_calls)
    turns = ToolTurns()
    messages = [turns.message("system" if m.role == "developer" else m.role, _message_text(m, body.model),
                              tool_calls=m.tool_calls, tool_call_id=m.tool_call_id) for m in body.messages]
    max_tokens = body.max_completion_tokens or body.max_tokens
    job = _job(model, body, "", max_tokens, output=output, logprobs=logprobs)
    prepared = await tool_prompt(model, messages, plan, fit=fitter.for_job(model, job))
    job.prompt = prepared.prompt
    if prepared.format is not None:
        if output is not None:
            raise bad_request("'response_format' cannot be combined with a forced tool call ('tool_choice' "
                              "required or a named function)", param="response_format")
        job.format = prepared.format
    text = prepared.splitter()
    generation, first = await start(queue, job, request)
    completion_id = f"chatcmpl-{secrets.token_hex(12)}"
    created = int(time.time())
    if body.stream:
        usage = bool(body.stream_options and body.stream_options.include_usage)
        return Stream(_chat_sse(generation, first, completion_id, created, body.model, usage, text), media_type=SSE,
                      headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
    outcome: Outcome = await generation.watch(request.receive, generation.collect(first))
    content, calls = split_whole(outcome.text, text)
    message = wire.AssistantMessage(role="assistant", content=content if content or not calls else None,
                                    tool_calls=[_tool_call(c) for c in calls] or None)
    return Response(_encode(wire.ChatCompletion(
        id=completion_id, object="chat.completion", created=created, model=body.model,
        choices=[wire.ChatChoice(index=0, message=message,
                                 finish_reason="tool_calls" if calls else _finish_reason(outcome.done),
                                 logprobs=None if logprobs is None else chat_logprobs(outcome.logprobs))],
        usage=_usage(outcome.done),
    )), media_type="application/json")


def _tool_call(call: ParsedCall) -> wire.ToolCallOut:
    return wire.ToolCallOut(id=call.id, function=wire.FunctionCallOut(name=call.name, arguments=call.arguments_json()))


def _delta(piece: str | list[ParsedCall]) -> wire.Delta:
    if isinstance(piece, str):
        return wire.Delta(content=piece)
    return wire.Delta(tool_calls=[wire.DeltaToolCall(index=c.index, id=c.id, function=_tool_call(c).function)
                                  for c in piece])


async def _chat_sse(generation: Generation, first: Event, completion_id: str, created: int, model: str,
                    include_usage: bool, text: TextSplitter) -> AsyncIterator[bytes]:
    def chunk(delta: wire.Delta, finish: wire.FinishReason | None = None,
              logprobs: wire.ChoiceLogprobs | None = None) -> bytes:
        return _sse(wire.ChatCompletionChunk(
            id=completion_id, object="chat.completion.chunk", created=created, model=model,
            choices=[wire.ChunkChoice(index=0, delta=delta, finish_reason=finish, logprobs=logprobs)],
        ))

    yield chunk(wire.Delta(role="assistant", content=""))
    async for event in generation.rest(first):
        if isinstance(event, Token):
            logprobs = None if event.logprobs is None else chat_logprobs(event.logprobs)
            pieces = list(grouped(text.feed(event.text)))
            if not pieces and logprobs is not None:  # text held back (a possible tool call): keep the entries
                yield chunk(wire.Delta(content=""), logprobs=logprobs)
            for i, piece in enumerate(pieces):
                yield chunk(_delta(piece), logprobs=logprobs if i == 0 else None)
        elif isinstance(event, Done):
            for piece in grouped(text.finish()):
                yield chunk(_delta(piece))
            yield chunk(wire.Delta(), "tool_calls" if text.calls else _finish_reason(event))
            if include_usage:
                yield _sse(wire.ChatCompletionChunk(
                    id=completion_id, object="chat.completion.chunk", created=created, model=model,
                    choices=[], usage=_usage(event)))
            yield b"data: [DONE]\n\n"
        else:
            yield _error_event(event.message, event.status)


@post("/v1/completions", status_code=200)
async def completions(request: Request[Any, Any, Any], catalog: Catalog,
                      queue: JobQueue) -> Response[bytes] | Stream:
    body: wire.CompletionRequest = decode_body(await request.body(), wire.CompletionRequest)
    if not isinstance(body.prompt, str):
        raise bad_request("'prompt' must be a string", param="prompt")
    model = await catalog.resolve(body.model)
    _check_common(body)
    reject_unsupported(echo=body.echo, best_of=None if body.best_of in (None, 1) else body.best_of)
    logprobs = _completion_logprobs(body)
    if body.suffix and body.prompt:
        prompt = model.render_fill_in_middle(body.prompt, body.suffix)
    else:
        prompt = model.render_generate(body.prompt, None) if body.prompt else body.prompt
    job = _job(model, body, prompt, body.max_tokens, logprobs=logprobs)
    generation, first = await start(queue, job, request)
    completion_id = f"cmpl-{secrets.token_hex(12)}"
    created = int(time.time())
    if body.stream:
        usage = bool(body.stream_options and body.stream_options.include_usage)
        return Stream(_completion_sse(generation, first, completion_id, created, body.model, usage, len(body.prompt)),
                      media_type=SSE, headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
    outcome: Outcome = await generation.watch(request.receive, generation.collect(first))
    return Response(_encode(wire.Completion(
        id=completion_id, object="text_completion", created=created, model=body.model,
        choices=[wire.CompletionChoice(
            index=0, text=outcome.text, finish_reason=_finish_reason(outcome.done),
            logprobs=None if logprobs is None else completion_logprobs(outcome.logprobs, len(body.prompt)))],
        usage=_usage(outcome.done),
    )), media_type="application/json")


async def _completion_sse(generation: Generation, first: Event, completion_id: str, created: int, model: str,
                          include_usage: bool, prompt_length: int) -> AsyncIterator[bytes]:
    def chunk(text: str, finish: wire.FinishReason | None = None, usage: wire.Usage | None = None,
              choices: bool = True, logprobs: wire.CompletionLogprobs | None = None) -> bytes:
        return _sse(wire.Completion(
            id=completion_id, object="text_completion", created=created, model=model,
            choices=[wire.CompletionChoice(index=0, text=text, finish_reason=finish, logprobs=logprobs)]
            if choices else [],
            usage=usage,
        ))

    offset = prompt_length  # text_offset counts from the start of the prompt, as OpenAI's does
    async for event in generation.rest(first):
        if isinstance(event, Token):
            logprobs = None
            if event.logprobs is not None:
                logprobs = completion_logprobs(event.logprobs, offset)
                offset += sum(len(token) for token in logprobs.tokens)
            yield chunk(event.text, logprobs=logprobs)
        elif isinstance(event, Done):
            yield chunk("", _finish_reason(event))
            if include_usage:
                yield chunk("", usage=_usage(event), choices=False)
            yield b"data: [DONE]\n\n"
        else:
            yield _error_event(event.message, event.status)


def _model_object(record: ModelRecord) -> wire.ModelObject:
    return wire.ModelObject(
        id=record.name.display(), object="model",
        created=int(record.modified_at.replace(tzinfo=record.modified_at.tzinfo or datetime.UTC).timestamp()),
        owned_by=record.name.namespace,
    )


@get("/v1/models")
async def list_models(catalog: Catalog) -> Response[bytes]:
    data = [_model_object(r) for r in await catalog.list()]
    return Response(_encode(wire.ModelList(object="list", data=data)), media_type="application/json")


@get("/v1/models/{model:path}")
async def get_model(model: str, catalog: Catalog) -> Response[bytes]:
    name = model.lstrip("/")
    record = catalog.find(name)
    if record is None:
        raise model_not_found(name)
    return Response(_encode(_model_object(record)), media_type="application/json")


ROUTES = [chat_completions, completions, list_models, get_model]
