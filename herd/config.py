"""Herd's settings: one typed object, read once at start.

Each setting reads `HERD_<NAME>`, then `OLLAMA_<NAME>` (so an existing Ollama service file
keeps working), then its default. The table in docs/configuration.md is generated from
`SETTINGS` below (`herd config --markdown`), and a test keeps the two equal.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from herd.durations import parse_duration

DEFAULT_PORT = 11434
DEFAULT_PREFILL_SLICE_MS = 250
DEFAULT_CACHE_RAM_MIB = 1024


@dataclasses.dataclass(frozen=True)
class Setting:
    name: str  # HERD_<name> / OLLAMA_<name>
    default: str  # as an environment value would spell it
    doc: str
    ollama_alias: bool = True  # whether OLLAMA_<name> is read too


SETTINGS: tuple[Setting, ...] = (
    Setting("HOST", "127.0.0.1:11434", "Address the gateway binds and the CLI talks to (`host:port`, "
            "`http://host:port`; port defaults to 11434)."),
    Setting("MODELS", "~/.herd/models", "Model store, in Ollama's layout (`manifests/`, `blobs/`). "
            "Point it at an Ollama store to serve those models."),
    Setting("REDIS_URL", "", "Redis shared by gateways and workers. Empty: `herd serve` starts an "
            "embedded `redis-server` on a private port.", ollama_alias=False),
    Setting("WORKERS", "1", "Worker processes `herd serve` starts on this host.", ollama_alias=False),
    Setting("NUM_PARALLEL", "4", "Sequences one loaded model decodes at once, batched in one context."),
    Setting("MAX_LOADED_MODELS", "3", "Models one worker keeps loaded at once."),
    Setting("MAX_QUEUE", "512", "Jobs that may wait for a worker, over all models (running ones do not "
            "count); beyond it: 503 with Retry-After, at once."),
    Setting("MAX_JOBS_PER_CLIENT", "0", "Jobs one client may have queued or running at once, over all models and "
            "gateways: a client is its API key when `HERD_API_KEYS` is set, else its address; past it: 429 with "
            "Retry-After, at once; 0: no limit.", ollama_alias=False),
    Setting("QUEUE_TIMEOUT", "5m", "How long a request may wait for its first token (queue, load, prompt); "
            "past it: 503 and the job is dropped.", ollama_alias=False),
    Setting("PREFIX_ROUTING", "1", "`1`: a prompt that starts like one a worker took lately (a chat's next turn, a "
            "long shared system prompt) goes to that worker while it has a sequence free, where those tokens are "
            "still decoded; `0`: every job to whichever worker claims it first.", ollama_alias=False),
    Setting("KEEP_ALIVE", "5m", "How long an idle model stays loaded (Go duration or seconds; "
            "negative: forever, 0: unload when idle)."),
    Setting("CONTEXT_LENGTH", "4096", "Context window (tokens) of each sequence, capped at the "
            "model's training context."),
    Setting("PREFILL_SLICE", f"{DEFAULT_PREFILL_SLICE_MS}ms", "While sequences are generating, each decode step "
            "takes only as much of new requests' prompts as runs in about this long, so running streams do not "
            "stall behind a long prompt; 0: a step takes a whole batch of prompt (llama.cpp's way).",
            ollama_alias=False),
    Setting("CACHE_RAM", str(DEFAULT_CACHE_RAM_MIB), "Host memory (MiB) each loaded model may fill with the cells of "
            "conversations whose sequence went to another request, so their next turn does not decode its history "
            "again (llama.cpp server's `--cache-ram`); 0: none.", ollama_alias=False),
    Setting("DRAIN_TIMEOUT", "30s", "How long a stopping worker (SIGTERM, SIGINT) goes on with the answers it is "
            "generating, taking no new jobs, before it stops; answers still running then end with an error. "
            "0: stop at once; negative: wait for them all.", ollama_alias=False),
    Setting("NUM_THREAD", "0", "Threads for decoding; 0: one per physical core this process may use, "
            "divided among the workers `herd serve` starts.", ollama_alias=False),
    Setting("FLASH_ATTENTION", "auto", "`1`/`0` forces flash attention on or off; `auto` lets llama.cpp "
            "decide."),
    Setting("TRUSTED_PROXIES", "127.0.0.1", "Addresses (comma separated, CIDR allowed, `*`: any) whose "
            "`X-Forwarded-For` the gateway takes for the client's address (its logs, `MAX_JOBS_PER_CLIENT` without "
            "API keys): the proxies in front of it, such as nginx.", ollama_alias=False),
    Setting("ORIGINS", "", "Extra CORS origins, comma separated (`*` allowed), added to the localhost ones."),
    Setting("API_KEYS", "", "Keys a client must send (`Authorization: Bearer KEY`) on every route but `/`, "
            "comma separated; empty: no keys asked (as Ollama).", ollama_alias=False),
    Setting("API_KEY", "", "The key the `herd` CLI sends to the server.", ollama_alias=False),
    Setting("LOAD_TIMEOUT", "5m", "How long one model load may take before a new load is requested for "
            "the jobs waiting on it."),
    Setting("NOPRUNE", "0", "`1` keeps the blobs a pull's new manifest no longer uses (by default they are "
            "removed when no other model uses them)."),
    Setting("DEBUG", "0", "`1` logs debug detail."),
)


def parse_host(value: str) -> tuple[str, int]:
    """`OLLAMA_HOST`-style address → (host, port). Accepts a scheme and a bare port."""
    text = value.strip().strip("\"'")
    default_port = DEFAULT_PORT
    for scheme, port in (("http://", DEFAULT_PORT), ("https://", 443)):
        if text.startswith(scheme):
            text, default_port = text[len(scheme):], port
    text = text.rstrip("/")
    if text.startswith("["):  # [::1]:11434
        host, _, rest = text[1:].partition("]")
        port_text = rest.lstrip(":")
    elif text.count(":") == 1:
        host, port_text = text.split(":")
    else:
        host, port_text = text, ""
    host = host or "127.0.0.1"
    if not port_text:
        return host, default_port
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError(f"invalid port in host {value!r}")
    return host, int(port_text)


def _truthy(value: str) -> bool:
    return value.strip().lower() in {"1", "true", "yes", "on"}


def _int(value: str, default: str) -> int:
    """Ollama's rule: a bad integer falls back to the default."""
    try:
        return int(value.strip())
    except ValueError:
        return int(default)


@dataclasses.dataclass(frozen=True)
class Config:
    host: str
    port: int
    models: Path
    redis_url: str | None
    workers: int
    num_parallel: int
    max_loaded_models: int
    max_queue: int
    max_jobs_per_client: int  # 0: no limit
    queue_timeout: float  # seconds
    prefix_routing: bool
    keep_alive: float  # seconds; math.inf = forever
    context_length: int
    prefill_slice: float  # seconds
    cache_ram: int  # MiB
    drain_timeout: float  # seconds
    num_thread: int
    flash_attention: bool | None  # None = auto
    trusted_proxies: str  # uvicorn's forwarded_allow_ips
    origins: tuple[str, ...]
    api_keys: tuple[str, ...]
    api_key: str
    load_timeout: float
    noprune: bool
    debug: bool

    @property
    def base_url(self) -> str:
        host = "127.0.0.1" if self.host in {"0.0.0.0", "::", ""} else self.host
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> Config:
        """Read every setting from `env` (default: os.environ); `overrides` win over both."""
        source = os.environ if env is None else env
        raw = {s.name: _lookup(source, s) for s in SETTINGS}
        host, port = parse_host(raw["HOST"])
        flash = raw["FLASH_ATTENTION"].strip().lower()
        keep_alive = _duration_or_default(raw["KEEP_ALIVE"], "5m")
        config = cls(
            host=host,
            port=port,
            models=Path(raw["MODELS"]).expanduser(),
            redis_url=raw["REDIS_URL"].strip() or None,
            workers=max(0, _int(raw["WORKERS"], "1")),
            num_parallel=max(1, _int(raw["NUM_PARALLEL"], "4")),
            max_loaded_models=max(1, _int(raw["MAX_LOADED_MODELS"], "3")),
            max_queue=max(1, _int(raw["MAX_QUEUE"], "512")),
            max_jobs_per_client=max(0, _int(raw["MAX_JOBS_PER_CLIENT"], "0")),
            queue_timeout=_duration_or_default(raw["QUEUE_TIMEOUT"], "5m"),
            prefix_routing=_truthy(raw["PREFIX_ROUTING"]),
            keep_alive=keep_alive,
            context_length=max(64, _int(raw["CONTEXT_LENGTH"], "4096")),
            prefill_slice=max(0.0, _duration_or_default(raw["PREFILL_SLICE"], f"{DEFAULT_PREFILL_SLICE_MS}ms")),
            cache_ram=max(0, _int(raw["CACHE_RAM"], str(DEFAULT_CACHE_RAM_MIB))),
            drain_timeout=max(0.0, _duration_or_default(raw["DRAIN_TIMEOUT"], "30s")),
            num_thread=max(0, _int(raw["NUM_THREAD"], "0")),
            flash_attention=None if flash in {"", "auto"} else _truthy(flash),
            trusted_proxies=",".join(p.strip() for p in raw["TRUSTED_PROXIES"].split(",") if p.strip()) or "127.0.0.1",
            origins=tuple(o.strip() for o in raw["ORIGINS"].split(",") if o.strip()),
            api_keys=tuple(k.strip() for k in raw["API_KEYS"].split(",") if k.strip()),
            api_key=raw["API_KEY"].strip(),
            load_timeout=_duration_or_default(raw["LOAD_TIMEOUT"], "5m"),
            noprune=_truthy(raw["NOPRUNE"]),
            debug=_truthy(raw["DEBUG"]),
        )
        return dataclasses.replace(config, **overrides) if overrides else config

    def to_env(self) -> dict[str, str]:
        """The HERD_* variables that reproduce this config in a child process."""
        def duration(seconds: float) -> str:
            return "-1" if math.isinf(seconds) else repr(seconds)

        return {
            "HERD_HOST": f"{self.host}:{self.port}",
            "HERD_MODELS": str(self.models),
            "HERD_REDIS_URL": self.redis_url or "",
            "HERD_WORKERS": str(self.workers),
            "HERD_NUM_PARALLEL": str(self.num_parallel),
            "HERD_MAX_LOADED_MODELS": str(self.max_loaded_models),
            "HERD_MAX_QUEUE": str(self.max_queue),
            "HERD_MAX_JOBS_PER_CLIENT": str(self.max_jobs_per_client),
            "HERD_QUEUE_TIMEOUT": duration(self.queue_timeout),
            "HERD_PREFIX_ROUTING": str(int(self.prefix_routing)),
            "HERD_KEEP_ALIVE": duration(self.keep_alive),
            "HERD_CONTEXT_LENGTH": str(self.context_length),
            "HERD_PREFILL_SLICE": duration(self.prefill_slice),
            "HERD_CACHE_RAM": str(self.cache_ram),
            "HERD_DRAIN_TIMEOUT": duration(self.drain_timeout),
            "HERD_NUM_THREAD": str(self.num_thread),
            "HERD_FLASH_ATTENTION": "auto" if self.flash_attention is None else str(int(self.flash_attention)),
            "HERD_TRUSTED_PROXIES": self.trusted_proxies,
            "HERD_ORIGINS": ",".join(self.origins),
            "HERD_API_KEYS": ",".join(self.api_keys),
            "HERD_API_KEY": self.api_key,
            "HERD_LOAD_TIMEOUT": duration(self.load_timeout),
            "HERD_NOPRUNE": str(int(self.noprune)),
            "HERD_DEBUG": str(int(self.debug)),
        }


def _lookup(env: Mapping[str, str], setting: Setting) -> str:
    for prefix in ("HERD_", "OLLAMA_") if setting.ollama_alias else ("HERD_",):
        value = env.get(prefix + setting.name)
        if value is not None and value.strip() != "":
            return value.strip().strip("\"'")
    return setting.default


def _duration_or_default(value: str, default: str) -> float:
    try:
        return parse_duration(value)
    except ValueError:
        return parse_duration(default)


def settings_table() -> str:
    """The Markdown table of every setting, for docs/configuration.md."""
    rows = ["| setting | also read | default | meaning |", "|---|---|---|---|"]
    for s in SETTINGS:
        alias = f"`OLLAMA_{s.name}`" if s.ollama_alias else ""
        default = f"`{s.default}`" if s.default else "(unset)"
        rows.append(f"| `HERD_{s.name}` | {alias} | {default} | {s.doc} |")
    return "\n".join(rows) + "\n"

