"""Redis clients that ride out a Redis restart.

redis-py's connections from `from_url` retry nothing: after Redis restarts, each pooled
connection fails its next command once ("Connection closed by server"), and a blip of a second
fails whatever was running. These clients retry connection errors and timeouts a few times
with a short backoff (about 1.5 s in all) on a fresh connection; past that the error is the
caller's (the gateway answers 503, the worker's loops wait and try again).
"""

from __future__ import annotations

from typing import Any

import redis
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.retry import Retry

_RETRIES = 5
_BACKOFF = {"base": 0.05, "cap": 0.5}  # seconds: 0.1, 0.2, 0.4, 0.5, 0.5
RETRIED = (RedisConnectionError, RedisTimeoutError)


def async_client(url: str, **options: Any) -> aioredis.Redis:
    return aioredis.Redis.from_url(url, retry=AsyncRetry(ExponentialBackoff(**_BACKOFF), _RETRIES),
                                   retry_on_error=list(RETRIED), **options)


def sync_pool(url: str, **options: Any) -> redis.ConnectionPool:
    return redis.ConnectionPool.from_url(url, retry=Retry(ExponentialBackoff(**_BACKOFF), _RETRIES),
                                         retry_on_error=list(RETRIED), **options)
