"""The Redis contract between gateways and workers: key names and message types.

Imports nothing but msgspec, so the gateway runs without llama-cpp-python. Every message
is a msgspec Struct encoded as msgpack under the field `m` of a stream entry.

Keys (all under `herd:`):
- `jobs:{digest}`      stream of Job per model weights (sha256 hex), consumer group `workers`.
- `jobs:{digest}:{id}` one worker's own stream of Jobs for that model (same group), read by it
                       before the shared one: jobs whose prompt starts like one it served lately.
- `personal:{digest}`  set of the workers that have such a stream, for the janitor.
- `free:{digest}`      hash: worker id → its free sequences for the model (gateways route a job
                       to a worker's own stream only when it has one free, and count it taken).
- `prefix:{digest}:{h}` the worker that last took a prompt starting with the prefix hashed `h`
                       (`Job.prefixes`), with a TTL.
- `loads`              stream of LoadRequest, consumer group `workers`: "someone load this".
- `holders:{digest}`   sorted set of the workers holding a model, scored by heartbeat expiry.
- `loading:{digest}`   SET NX guard so a burst of requests posts one LoadRequest.
- `events:{job}`       stream of Event per job, read from 0-0 by the gateway; expires.
- `cancel:{job}`       set (with a TTL) when the client went away; also PUBLISHed on `cancels`.
- `worker:{id}`        a worker's heartbeat (WorkerState), with a TTL; `workers` indexes them.
- `gateway:{id}`       a gateway's heartbeat, with a TTL: workers drop the jobs of a gateway gone
                       (nobody would read their answers).
- `waiting`            sorted set of the jobs not yet claimed (job id → enqueue ms): MAX_QUEUE.
- `client:{id}`        sorted set of one client's jobs queued or running (job id → ms the gateway
                       following it last vouched for it): MAX_JOBS_PER_CLIENT. `id` is a hash,
                       never the API key or address itself.
- `models`             set of the digests that have a job stream, for the janitor's rounds.
- `janitor`            SET NX lock: one worker a round requeues dead workers' jobs, places loads.
- `control`            channel: Control messages for every worker (unload a model).
- `control:{id}`       channel: Control messages for one worker (load a replica).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from typing import Annotated, Any, Literal

import msgspec

PREFIX = "herd:"
WORKERS_GROUP = "workers"
LOADS_STREAM = PREFIX + "loads"
CANCELS_CHANNEL = PREFIX + "cancels"
WORKERS_SET = PREFIX + "workers"
WAITING_SET = PREFIX + "waiting"
MODELS_SET = PREFIX + "models"
JANITOR_LOCK = PREFIX + "janitor"
CONTROL_CHANNEL = PREFIX + "control"

EVENTS_TTL_MS = 10 * 60 * 1000  # a gateway that lost its client never reads them: let them go
EVENTS_MAXLEN = 100_000
CANCEL_TTL_S = 600
PREFIX_TTL_S = 900  # how long a worker is named for the prompts it took (its cells may outlive a chat's pause)
HEARTBEAT_INTERVAL_S = 1.0
HEARTBEAT_TTL_S = 5  # three missed beats and the worker is taken for dead
GATEWAY_TTL_S = 10  # a gateway silent this long is gone: its jobs are dropped (a stall must not cost answers)

# The first lines of every script that scores or ages entries: Redis's clock in ms, so the
# clocks of the hosts running gateways and workers never meet in one comparison.
LUA_NOW_MS = """
local now = redis.call('TIME')
local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
"""

_DIGEST = re.compile(r"^[0-9a-f]{64}$")
_JOB_ID = re.compile(r"^[0-9a-zA-Z_-]{1,64}$")


def _checked(value: str, pattern: re.Pattern[str], what: str) -> str:
    # Keys are built from these values; never let a client-chosen `:` or `*` through.
    if not pattern.match(value):
        raise ValueError(f"invalid {what}: {value!r}")
    return value


def _per_model(kind: str, digest: str) -> str:
    return f"{PREFIX}{kind}:{_checked(digest, _DIGEST, 'digest')}"


def _per_id(kind: str, value: str, what: str) -> str:
    return f"{PREFIX}{kind}:{_checked(value, _JOB_ID, what)}"


def load_key(weights: str, adapters: Sequence[str] = ()) -> str:
    """What a worker loads, as one digest: the weights' own digest for a plain model, so aliases
    share it; with LoRA adapters, a digest of the weights and the adapters in order, so a model
    with adapters never shares a loaded context with its base model."""
    if not adapters:
        return weights
    return hashlib.sha256("\n".join(["herd-load-v1", weights, *adapters]).encode()).hexdigest()


def checked_digest(digest: str) -> str:
    """A sha256 hex digest, or ValueError: digests become Redis keys and blob file names."""
    return _checked(digest, _DIGEST, "digest")


def jobs_key(digest: str) -> str:
    return _per_model("jobs", digest)


def holders_key(digest: str) -> str:
    """Sorted set: worker id → unix ms until which it holds the model (refreshed by heartbeat)."""
    return _per_model("holders", digest)


def personal_jobs_key(digest: str, worker_id: str) -> str:
    return f"{jobs_key(digest)}:{_checked(worker_id, _JOB_ID, 'worker id')}"


def personal_set_key(digest: str) -> str:
    return _per_model("personal", digest)


def free_slots_key(digest: str) -> str:
    return _per_model("free", digest)


def prefix_key_base(digest: str) -> str:
    """`prefix:{digest}:`, completed by a hash from `Job.prefixes`."""
    return _per_model("prefix", digest) + ":"


def loading_key(digest: str) -> str:
    return _per_model("loading", digest)


def events_key(job_id: str) -> str:
    return _per_id("events", job_id, "job id")


def cancel_key(job_id: str) -> str:
    return _per_id("cancel", job_id, "job id")


def client_jobs_key(client_id: str) -> str:
    return _per_id("client", client_id, "client id")


def control_channel(worker_id: str) -> str:
    return f"{CONTROL_CHANNEL}:{_checked(worker_id, _JOB_ID, 'worker id')}"


def replica_key(digest: str) -> str:
    """SET NX guard: one replica load at a time per model."""
    return _per_model("replica", digest)


def gateway_key(gateway_id: str) -> str:
    return _per_id("gateway", gateway_id, "gateway id")


def worker_key(worker_id: str) -> str:
    return _per_id("worker", worker_id, "worker id")


NonNegative = Annotated[int, msgspec.Meta(ge=0)]


class SamplingOptions(msgspec.Struct, kw_only=True, omit_defaults=True):
    """Everything that shapes one sequence's decoding. Defaults are Ollama's."""

    temperature: float = 0.8
    top_k: int = 40
    top_p: float = 0.9
    min_p: float = 0.0
    typical_p: float = 1.0
    repeat_last_n: int = 64
    repeat_penalty: float = 1.0
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    seed: int = -1  # -1: random
    num_predict: int = -1  # <= 0: the engine caps it at ten contexts (Ollama)
    stop: list[str] = []
    num_ctx: int = 0  # 0: the worker's per-sequence context
    num_keep: int = 4  # prompt tokens (after BOS) that truncation and context shifts keep; -1: all


class OutputFormat(msgspec.Struct, kw_only=True, omit_defaults=True):
    """A grammar constraint on the generated text. The gateway validates the schema; the
    worker compiles it to a llama.cpp grammar (GBNF) and adds it to the sequence's sampler
    chain, so whatever is sampled parses."""

    json_schema: dict[str, Any] | None = None  # None: any JSON object


class Job(msgspec.Struct, kw_only=True):
    """One request for a worker: a fully rendered `prompt` to generate from, or inputs to
    `embed`; neither asks only for a load."""

    id: str
    model: str  # the name the client used, for logs and /api/ps
    digest: str  # load_key(weights, adapters): what a worker loads, and the job stream's key
    prompt: str | None
    options: SamplingOptions = msgspec.field(default_factory=SamplingOptions)
    keep_alive: float | None = None  # seconds, inf: forever; None: the worker's default
    created: float = 0.0  # unix seconds when the gateway accepted it
    attempt: int = 0  # how many times a dead worker's claim was requeued
    embed: list[str | list[int]] | None = None  # inputs to embed (texts or token ids); `prompt` is None
    # Ollama's `truncate`: cut a prompt (or embed input) longer than the context, else fail the job (400).
    truncate: bool = True
    shift: bool = True  # Ollama's `shift`: a full context drops older cells and goes on, else done_reason "length"
    dimensions: int | None = None  # embed: keep only the first `dimensions` values of each vector
    format: OutputFormat | None = None  # constrain the output (structured outputs, forced tool calls)
    weights: str = ""  # sha256 hex of the GGUF weights when it differs from `digest` (adapters)
    adapters: list[str] = []  # sha256 hex of LoRA adapter GGUFs, applied in order
    logprobs: int | None = None  # report each token's log probability and this many alternatives (0-20); None: off
    logit_bias: dict[int, float] | None = None  # token id -> added to its logit before sampling (OpenAI logit_bias)
    user: str | None = None  # the client's end-user id (OpenAI `user`): logged for audit, never used to decode
    # Hashes of the prompt's first 256, 320, 400, ... bytes, longest first (`herd.prompt_prefixes`):
    # the worker that takes the job is named for them, so a later prompt starting alike goes to it.
    prefixes: list[str] = []
    gateway: str = ""  # the gateway following the job; when its heartbeat is gone, workers drop the job


class LoadRequest(msgspec.Struct, kw_only=True):
    digest: str
    model: str
    weights: str = ""  # as in Job: empty means `digest` is the weights' digest
    adapters: list[str] = []

    @classmethod
    def for_job(cls, job: Job) -> LoadRequest:
        return cls(digest=job.digest, model=job.model, weights=job.weights, adapters=list(job.adapters))

    @property
    def weights_digest(self) -> str:
        return self.weights or self.digest


class Control(msgspec.Struct, kw_only=True):
    """An order to workers: `load` a replica (to one worker), `unload` a model (to all)."""

    kind: Literal["load", "unload"]
    digest: str
    model: str = ""
    weights: str = ""  # load: as in LoadRequest
    adapters: list[str] = []


class TopLogprob(msgspec.Struct, array_like=True):
    """One of the most likely tokens at a position: its bytes and log probability."""

    piece: bytes  # what the token detokenizes to; may be part of a UTF-8 character
    logprob: float


class TokenLogprob(msgspec.Struct, array_like=True):
    """A sampled token: its bytes, its log probability under the model's raw distribution
    (before bias, grammar, penalties and temperature), and the most likely alternatives."""

    piece: bytes
    logprob: float
    top: list[TopLogprob] = []


class Token(msgspec.Struct, tag="token", kw_only=True, omit_defaults=True):
    attempt: int
    seq: int
    text: str
    # Asked for with Job.logprobs: one entry per sampled token whose text begins in `text`
    # (a token held back as a possible stop string comes with the text it released).
    logprobs: list[TokenLogprob] | None = None


class Done(msgspec.Struct, tag="done", kw_only=True):
    attempt: int
    seq: int
    done_reason: Literal["stop", "length", "load", "unload"]
    prompt_eval_count: NonNegative = 0
    prompt_cached_count: NonNegative = 0  # of the prompt's tokens, those found in the worker's KV cache
    prompt_eval_duration: NonNegative = 0  # nanoseconds, like Ollama
    eval_count: NonNegative = 0
    eval_duration: NonNegative = 0
    load_duration: NonNegative = 0


class Error(msgspec.Struct, tag="error", kw_only=True):
    attempt: int
    seq: int
    message: str
    status: int = 500  # the HTTP status the gateway answers with if nothing was sent yet


class Embeddings(msgspec.Struct, tag="embeddings", kw_only=True):
    """The answer to an embed job, one vector per input in order; final, like Done.
    Vectors are as the model pooled them, not normalized."""

    attempt: int
    seq: int
    vectors: list[list[float]]
    prompt_eval_count: NonNegative = 0
    prompt_eval_duration: NonNegative = 0  # nanoseconds
    load_duration: NonNegative = 0


Event = Token | Done | Error | Embeddings


class LoadedModel(msgspec.Struct, kw_only=True):
    digest: str
    model: str
    size: int  # bytes of weights
    context_length: int  # per sequence
    parallel: int
    busy: int  # sequences running now
    expires_at: float | None  # unix seconds; None: never
    saved_prompt_bytes: int = 0  # host memory holding cells saved from its sequences


class WorkerState(msgspec.Struct, kw_only=True):
    id: str
    host: str
    pid: int
    max_loaded_models: int
    loaded: list[LoadedModel] = []
    beat: float = 0.0  # unix seconds of this heartbeat
    threads: int = 0  # llama.cpp threads per decode (0: not reported)
    draining: bool = False  # stopping: finishes its running jobs, takes no new ones, holds nothing for placement


_job_encoder = msgspec.msgpack.Encoder()
_job_decoder = msgspec.msgpack.Decoder(Job)
_load_decoder = msgspec.msgpack.Decoder(LoadRequest)
_event_decoder = msgspec.msgpack.Decoder(Event)
_worker_decoder = msgspec.msgpack.Decoder(WorkerState)
_control_decoder = msgspec.msgpack.Decoder(Control)

encode = _job_encoder.encode


def decode_job(data: bytes) -> Job:
    return _job_decoder.decode(data)


def decode_load(data: bytes) -> LoadRequest:
    return _load_decoder.decode(data)


def decode_event(data: bytes) -> Event:
    event: Event = _event_decoder.decode(data)
    return event


def decode_worker(data: bytes) -> WorkerState:
    return _worker_decoder.decode(data)


def decode_control(data: bytes) -> Control:
    return _control_decoder.decode(data)
