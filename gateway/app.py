"""The gateway's Litestar application: both API dialects over one job queue."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import redis.asyncio as aioredis
from litestar import Litestar, Request, Response
from litestar.config.cors import CORSConfig
from litestar.di import Provide
from litestar.exceptions import HTTPException

from gateway import embed_api, metrics, ollama_api, openai_api, registry_api, responses_api, store_api
from gateway.catalog import Catalog
from gateway.errors import ApiError, error_body, handle_api_error, handle_http_exception
from gateway.generation import ClientGone
from gateway.jobs import JobQueue
from gateway.prompt_fit import ConversationFitter, TokenCounter
from herd.config import Config
from herd.redis_client import RETRIED, async_client
from herd.store.store import ModelStore

log = logging.getLogger(__name__)

# Ollama's own CORS rule: any port on the local names, plus desktop-app schemes.
_LOCAL_ORIGINS = r"(https?://(localhost|127\.0\.0\.1|0\.0\.0\.0|\[::1\])(:\d+)?|(app|file|tauri|vscode-webview|vscode-file)://.*)"


def _cors(config: Config) -> CORSConfig:
    if "*" in config.origins:
        return CORSConfig(allow_origins=["*"])
    return CORSConfig(allow_origins=list(config.origins), allow_origin_regex=f"^{_LOCAL_ORIGINS}$")


def _handle_client_gone(request: Request[Any, Any, Any], exc: ClientGone) -> Response[bytes]:
    return Response(b"", status_code=499)  # nobody is listening; this is for the access log


def _handle_redis_down(request: Request[Any, Any, Any], exc: Exception) -> Response[bytes]:
    """Redis stayed unreachable past the client's retries: a 503 to try again, not a 500."""
    log.warning("Redis unreachable on %s %s: %s", request.method, request.url.path, exc)
    return Response(error_body(request.url.path, 503, f"the job queue (Redis) is unreachable: {exc}"),
                    status_code=503, media_type="application/json", headers={"Retry-After": "1"})


def _handle_unexpected(request: Request[Any, Any, Any], exc: Exception) -> Response[bytes]:
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return Response(error_body(request.url.path, 500, f"internal error: {exc}"), status_code=500,
                    media_type="application/json")


def _dependencies(catalog: Catalog, queue: JobQueue, transfers: registry_api.Transfers,
                  fitter: ConversationFitter) -> dict[str, Provide]:
    """The handlers' shared objects. Litestar resolves the dependencies of one level together in
    an anyio task group, two task spawns per generation request (a sixth of its in-process CPU);
    chained, each is a level of its own and resolved inline. The chain passes nothing on."""

    def provide_queue(catalog: Catalog) -> JobQueue:
        return queue

    def provide_transfers(queue: JobQueue) -> registry_api.Transfers:
        return transfers

    def provide_fitter(transfers: registry_api.Transfers) -> ConversationFitter:
        return fitter

    return {
        "catalog": Provide(lambda: catalog, sync_to_thread=False, use_cache=True),
        "queue": Provide(provide_queue, sync_to_thread=False, use_cache=True),
        "transfers": Provide(provide_transfers, sync_to_thread=False, use_cache=True),
        "fitter": Provide(provide_fitter, sync_to_thread=False, use_cache=True),
    }


def create_app(config: Config, redis_url: str) -> Litestar:
    catalog = Catalog(ModelStore(config.models))
    transfers = registry_api.Transfers(catalog.store, prune=not config.noprune)
    client: aioredis.Redis = async_client(redis_url, max_connections=20_000)
    queue = JobQueue(client, max_queue=config.max_queue, load_timeout_s=config.load_timeout,
                     queue_timeout_s=config.queue_timeout, max_jobs_per_client=config.max_jobs_per_client,
                     prefix_routing=config.prefix_routing)
    fitter = ConversationFitter(config.context_length, TokenCounter() if TokenCounter.available() else None)

    @asynccontextmanager
    async def redis_lifespan(_: Litestar) -> AsyncIterator[None]:
        await queue.beat()  # before the first request: a worker must never take this gateway for gone
        beating = asyncio.create_task(queue.keep_beating())
        try:
            yield
        finally:
            beating.cancel()
            await client.aclose()

    return Litestar(
        route_handlers=[*ollama_api.ROUTES, *openai_api.ROUTES, *embed_api.ROUTES, *store_api.ROUTES,
                        *registry_api.ROUTES, responses_api.responses, metrics.metrics],
        dependencies=_dependencies(catalog, queue, transfers, fitter),
        exception_handlers={
            ApiError: handle_api_error,
            HTTPException: handle_http_exception,
            ClientGone: _handle_client_gone,
            **dict.fromkeys(RETRIED, _handle_redis_down),
            Exception: _handle_unexpected,
        },
        middleware=[metrics.RequestMetrics()],
        cors_config=_cors(config),
        lifespan=[redis_lifespan],
        openapi_config=None,
        debug=False,
    )
