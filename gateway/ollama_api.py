"""The Ollama API: /api/generate, /api/chat (NDJSON streams), tags, show, delete, version."""

from __future__ import annotations

import datetime
from collections.abc import AsyncIterator
from typing import Any

import msgspec
from litestar import Request, Response, delete, get, head, post
from litestar.response import Stream

from gateway import wire_ollama as wire
from gateway.catalog import Catalog, ResolvedModel
from gateway.errors import bad_request, decode_body
from gateway.generation import Generation, start
from gateway.jobs import JobQueue, new_job_id
from gateway.logprobs import MAX_TOP_LOGPROBS, token_text
from gateway.options import merge_options
from gateway.prompt_fit import ConversationFitter
from gateway.requests import keep_alive_seconds, lacks_capability, reject_unsupported
from gateway.structured import ollama_format
from gateway.tool_calls import ParsedCall, Piece, PlainText, TextSplitter, grouped, split_whole
from gateway.tool_template import tool_prompt
from gateway.tools import ToolTurns, read_plan, read_tools
from herd import __version__
from herd.protocol import Done, Event, Job, LoadedModel, Token, TokenLogprob
from herd.store.store import ModelDetails

OLLAMA_API_VERSION = "0.13.0"  # the Ollama API level Herd answers for
NDJSON = "application/x-ndjson"
FOREVER = datetime.datetime(2318, 1, 1, tzinfo=datetime.UTC).timestamp()  # what Ollama shows for keep_alive < 0

_encode = msgspec.json.Encoder().encode


def now_rfc3339() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat().replace("+00:00", "Z")


def _json(body: Any, status: int = 200) -> Response[bytes]:
    return Response(_encode(body), status_code=status, media_type="application/json")


def _metrics(done: Done, total_ns: int) -> dict[str, Any]:
    return {
        "done_reason": done.done_reason,
        "total_duration": total_ns,
        "load_duration": done.load_duration,
        "prompt_eval_count": done.prompt_eval_count,
        "prompt_eval_duration": done.prompt_eval_duration,
        "eval_count": done.eval_count,
        "eval_duration": done.eval_duration,
    }


def _logprobs(entries: list[TokenLogprob] | None) -> list[wire.Logprob] | None:
    """Ollama's shape: token text, logprob, bytes, and the alternatives likewise."""
    if entries is None:
        return None
    return [
        wire.Logprob(token=token_text(e.piece), logprob=e.logprob, bytes=list(e.piece),
                     top_logprobs=[wire.TokenLogprob(token=token_text(t.piece), logprob=t.logprob,
                                                     bytes=list(t.piece)) for t in e.top] or None)
        for e in entries
    ]


class _Chunks:
    """Builds one dialect chunk for a piece of text or the final Done (generate or chat)."""

    def __init__(self, model: str, chat: bool) -> None:
        self.model = model
        self.chat = chat

    def text(self, text: str, logprobs: list[TokenLogprob] | None = None) -> bytes:
        stamp = now_rfc3339()
        lps = _logprobs(logprobs)
        if self.chat:
            message = wire.ChatMessageOut(role="assistant", content=text)
            return _encode(wire.ChatChunk(model=self.model, created_at=stamp, message=message, done=False,
                                          logprobs=lps))
        return _encode(wire.GenerateChunk(model=self.model, created_at=stamp, response=text, done=False,
                                          logprobs=lps))

    def calls(self, calls: list[ParsedCall]) -> bytes:
        """Tool calls come whole, in a chunk of their own, as Ollama sends them."""
        message = wire.ChatMessageOut(role="assistant", content="", tool_calls=_tool_calls(calls))
        return _encode(wire.ChatChunk(model=self.model, created_at=now_rfc3339(), message=message, done=False))

    def final(self, done: Done, total_ns: int, text: str = "", calls: list[ParsedCall] | None = None,
              logprobs: list[TokenLogprob] | None = None) -> bytes:
        stamp = now_rfc3339()
        metrics = _metrics(done, total_ns)
        lps = _logprobs(logprobs)
        if self.chat:
            message = wire.ChatMessageOut(role="assistant", content=text, tool_calls=_tool_calls(calls or []))
            return _encode(wire.ChatChunk(model=self.model, created_at=stamp, message=message, done=True,
                                          logprobs=lps, **metrics))
        return _encode(wire.GenerateChunk(model=self.model, created_at=stamp, response=text, done=True,
                                          logprobs=lps, **metrics))


def _tool_calls(calls: list[ParsedCall]) -> list[wire.ToolCall] | None:
    return [wire.ToolCall(id=c.id, function=wire.ToolFunctionCall(name=c.name, arguments=c.arguments, index=c.index))
            for c in calls] or None


async def _ndjson(generation: Generation, first: Event, chunks: _Chunks, text: TextSplitter) -> AsyncIterator[bytes]:
    def lines(pieces: list[Piece]) -> list[bytes]:
        return [(chunks.text(p) if isinstance(p, str) else chunks.calls(p)) + b"\n" for p in grouped(pieces)]

    async for event in generation.rest(first):
        if isinstance(event, Token):
            pieces = list(grouped(text.feed(event.text)))
            if not pieces and event.logprobs is not None:  # text held back: keep the entries
                yield chunks.text("", event.logprobs) + b"\n"
            for i, piece in enumerate(pieces):
                if isinstance(piece, str):
                    yield chunks.text(piece, event.logprobs if i == 0 else None) + b"\n"
                else:
                    yield chunks.calls(piece) + b"\n"
        elif isinstance(event, Done):
            for line in lines(text.finish()):
                yield line
            yield chunks.final(event, generation.total_duration()) + b"\n"
        else:  # an error after the stream began: one more line, as Ollama does
            yield _encode(wire.ErrorBody(error=event.message)) + b"\n"


async def _answer(
    request: Request[Any, Any, Any], queue: JobQueue, job: Job, stream: bool, chunks: _Chunks,
    text: TextSplitter | None = None,
) -> Response[bytes] | Stream:
    text = text or PlainText()
    generation, first = await start(queue, job, request)
    if stream:
        # X-Accel-Buffering: a proxy (nginx) must pass each line on as it comes.
        return Stream(_ndjson(generation, first, chunks, text), media_type=NDJSON,
                      headers={"X-Accel-Buffering": "no"})
    outcome = await generation.watch(request.receive, generation.collect(first))
    content, calls = split_whole(outcome.text, text)
    logprobs = outcome.logprobs if job.logprobs is not None else None
    return Response(chunks.final(outcome.done, generation.total_duration(), content, calls, logprobs),
                    media_type="application/json")


async def _load_or_unload(request: Request[Any, Any, Any], queue: JobQueue, model: ResolvedModel, name: str,
                          options: dict[str, Any] | None, keep_alive: Any, chunks: _Chunks) -> Response[bytes] | Stream:
    """An empty prompt loads the model; with keep_alive 0 it unloads it (`herd stop`)."""
    if keep_alive_seconds(keep_alive) == 0:
        await queue.unload(model.record.load_digest)
        done = Done(attempt=0, seq=0, done_reason="unload")
        return Response(chunks.final(done, 0) + b"\n", media_type="application/json")
    return await _answer(request, queue, _job(model, name, None, options, keep_alive), False, chunks)


def _job(model: ResolvedModel, name: str, prompt: str | None, options: dict[str, Any] | None,
         keep_alive: Any, body: wire.GenerateRequest | wire.ChatRequest | None = None) -> Job:
    return Job(
        id=new_job_id(),
        model=name,
        **model.record.load_target(),
        prompt=prompt,
        options=merge_options(model.record.parameters, options),
        keep_alive=keep_alive_seconds(keep_alive),
        created=datetime.datetime.now(datetime.UTC).timestamp(),
        format=None if body is None else ollama_format(body.format),
        logprobs=None if body is None else _logprobs_wanted(body),
        # Ollama: unset means true (`req.Truncate == nil || *req.Truncate`).
        truncate=body is None or body.truncate is not False,
        shift=body is None or body.shift is not False,
    )


def _logprobs_wanted(body: wire.GenerateRequest | wire.ChatRequest) -> int | None:
    """How many alternatives per token to report; None: no logprobs (top_logprobs alone asks
    for nothing, as in Ollama)."""
    top = body.top_logprobs or 0
    if not 0 <= top <= MAX_TOP_LOGPROBS:
        raise bad_request(f"top_logprobs must be between 0 and {MAX_TOP_LOGPROBS}", param="top_logprobs")
    return top if body.logprobs else None


@post("/api/generate", status_code=200)
async def generate(request: Request[Any, Any, Any], catalog: Catalog, queue: JobQueue) -> Response[bytes] | Stream:
    body: wire.GenerateRequest = decode_body(await request.body(), wire.GenerateRequest)
    model = await catalog.resolve(body.model)
    if body.images:
        raise lacks_capability(body.model, "vision", "images")
    if body.think:  # false is fine: Ollama accepts it for models that do not think
        raise lacks_capability(body.model, "thinking", "think")
    reject_unsupported(context=body.context)
    if body.raw and (body.template or body.system):
        raise bad_request("raw mode does not support template, system, or context")
    if body.raw and body.suffix:
        raise bad_request("raw mode does not support suffix", param="suffix")
    chunks = _Chunks(body.model, chat=False)
    if not body.prompt:
        return await _load_or_unload(request, queue, model, body.model, body.options, body.keep_alive, chunks)
    if body.raw:
        prompt = body.prompt
    elif body.suffix:
        prompt = model.render_fill_in_middle(body.prompt, body.suffix, template=body.template)
    else:
        prompt = model.render_generate(body.prompt, body.system, template=body.template)
    job = _job(model, body.model, prompt, body.options, body.keep_alive, body)
    return await _answer(request, queue, job, body.stream, chunks)


@post("/api/chat", status_code=200)
async def chat(request: Request[Any, Any, Any], catalog: Catalog, queue: JobQueue,
               fitter: ConversationFitter) -> Response[bytes] | Stream:
    body: wire.ChatRequest = decode_body(await request.body(), wire.ChatRequest)
    model = await catalog.resolve(body.model)
    if any(m.images for m in body.messages):
        raise lacks_capability(body.model, "vision", "messages")
    if body.think:
        raise lacks_capability(body.model, "thinking", "think")
    plan = read_plan(read_tools(body.tools), body.tool_choice)
    chunks = _Chunks(body.model, chat=True)
    if not body.messages:
        return await _load_or_unload(request, queue, model, body.model, body.options, body.keep_alive, chunks)
    turns = ToolTurns()
    messages = [turns.message(m.role, m.content, tool_calls=msgspec.to_builtins(m.tool_calls),
                              tool_call_id=m.tool_call_id, tool_name=m.tool_name) for m in body.messages]
    job = _job(model, body.model, "", body.options, body.keep_alive, body)
    prepared = await tool_prompt(model, messages, plan, fit=fitter.for_job(model, job))
    job.prompt = prepared.prompt
    if prepared.format is not None:
        if job.format is not None:
            raise bad_request("'format' cannot be combined with a forced tool call ('tool_choice')", param="format")
        job.format = prepared.format
    return await _answer(request, queue, job, body.stream, chunks, prepared.splitter())


@get("/api/tags")
async def tags(catalog: Catalog) -> Response[bytes]:
    models = [
        wire.ListedModel(
            name=r.name.display(), model=r.name.display(), modified_at=r.modified_at.isoformat(),
            size=r.size, digest=r.manifest_digest, details=r.details,
        )
        for r in await catalog.list()
    ]
    return _json(wire.TagsResponse(models=models))


@head("/api/tags")
async def tags_head() -> None:
    return None


@post("/api/show", status_code=200)
async def show(request: Request[Any, Any, Any], catalog: Catalog) -> Response[bytes]:
    body: wire.ModelRequest = decode_body(await request.body(), wire.ModelRequest)
    model = await catalog.resolve(body.target)
    return _json(await catalog.show(model, verbose=body.verbose))


@delete("/api/delete", status_code=200)
async def delete_model(request: Request[Any, Any, Any], catalog: Catalog) -> Response[bytes]:
    body: wire.ModelRequest = decode_body(await request.body(), wire.ModelRequest)
    await catalog.delete(body.target)
    return Response(b"", status_code=200)


@get("/api/ps")
async def ps(catalog: Catalog, queue: JobQueue) -> Response[bytes]:
    """Models loaded on any live worker, one row per model (replicas counted), latest expiry first."""
    instances: dict[str, list[tuple[str, LoadedModel]]] = {}
    for state in await queue.workers():
        for loaded in state.loaded:
            instances.setdefault(loaded.digest, []).append((state.id, loaded))
    rows: list[wire.RunningModel] = []
    for digest, holders in instances.items():
        copies = [loaded for _, loaded in holders]
        first = copies[0]
        record = catalog.find(first.model)
        expiries = [c.expires_at for c in copies]
        expires = FOREVER if None in expiries else max(e for e in expiries if e is not None)
        rows.append(wire.RunningModel(
            name=first.model, model=first.model, size=first.size,
            digest=record.manifest_digest if record else digest,
            details=record.details if record else ModelDetails("", "gguf", "", None, "", ""),
            expires_at=datetime.datetime.fromtimestamp(expires, datetime.UTC).isoformat().replace("+00:00", "Z"),
            size_vram=0, context_length=first.context_length, replicas=len(copies),
            workers=[worker_id for worker_id, _ in holders], parallel=first.parallel,
            busy=sum(c.busy for c in copies),
        ))
    rows.sort(key=lambda r: r.expires_at, reverse=True)
    return _json(wire.PsResponse(models=rows))


@get("/api/version")
async def version() -> Response[bytes]:
    return _json({"version": OLLAMA_API_VERSION, "herd_version": __version__})


@get("/", media_type="text/plain")
async def root() -> str:
    return "Ollama is running"


@head("/")
async def root_head() -> None:
    return None


ROUTES = [generate, chat, tags, tags_head, show, delete_model, ps, version, root, root_head]
