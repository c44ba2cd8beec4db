"""Appends events to their jobs' streams from an engine thread, without waiting for Redis.

Each decode step's events go out as one pipelined packet on the writer's own connection; the
replies are read later (whatever has arrived by the next step, all of them before the thread
sleeps), so a decode step never waits for a Redis round trip, and the worker's event loop is
not woken once per token. One connection per engine thread keeps every event of a job on one
connection, hence in order.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence

import redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from herd import protocol

log = logging.getLogger(__name__)

# An events stream lives EVENTS_TTL_MS (10 min) past its last renewal; renewing once a minute
# keeps a long generation's stream alive with one PEXPIRE a minute instead of one per token.
TTL_RENEW_S = 60.0
_TTL_TRACKED = 4096  # renewal times kept before the finished jobs' ones are dropped
_MAX_UNREAD = 4096  # replies left unread before a write waits for them (bounds what Redis buffers)


class TtlClock:
    """Which events streams need their TTL (re)set now: new ones, and those last set a while ago."""

    def __init__(self) -> None:
        self._renewed: dict[str, float] = {}  # events key -> when its TTL was last set (monotonic)

    def due(self, keys: set[str]) -> list[str]:
        now = time.monotonic()
        due = [key for key in keys if now - self._renewed.get(key, -math.inf) >= TTL_RENEW_S]
        for key in due:
            self._renewed[key] = now
        if len(self._renewed) > _TTL_TRACKED:  # forget finished jobs' streams
            self._renewed = {k: t for k, t in self._renewed.items() if now - t < TTL_RENEW_S}
        return due


class EventWriter:
    """A blocking-free writer of (events key, encoded event) pairs; use from one thread only."""

    def __init__(self, redis_url: str) -> None:
        self._pool = redis.ConnectionPool.from_url(redis_url)
        self._connection = self._pool.make_connection()
        self._unread = 0  # replies Redis owes us
        self._ttl = TtlClock()

    def write(self, entries: Sequence[tuple[str, bytes]]) -> None:
        """Send the XADDs (and due PEXPIREs) in one packet; collect the replies already here."""
        if not entries:
            return
        commands: list[tuple[object, ...]] = [
            ("XADD", key, "MAXLEN", "~", protocol.EVENTS_MAXLEN, "*", "m", data) for key, data in entries
        ]
        commands += [("PEXPIRE", key, protocol.EVENTS_TTL_MS) for key in self._ttl.due({key for key, _ in entries})]
        packet = self._connection.pack_commands(commands)  # type: ignore[no-untyped-call]
        for attempt in range(2):
            try:
                self._connection.send_packed_command(packet, check_health=False)  # type: ignore[no-untyped-call]
                break
            except (RedisConnectionError, RedisTimeoutError, OSError):
                # The replies owed on the lost connection are gone with it. Send once more on a
                # new one: a duplicated event is harmless (readers skip an (attempt, seq) seen).
                log.warning("events connection lost; reconnecting", exc_info=attempt > 0)
                self._reset()
        else:
            log.error("dropped %d events: Redis is unreachable", len(entries))
            return
        self._unread += len(commands)
        self._collect(wait=self._unread > _MAX_UNREAD)

    def settle(self) -> None:
        """Read every reply still owed (before the thread goes idle), so errors show now."""
        self._collect(wait=True)

    def close(self) -> None:
        try:
            self.settle()
        except Exception:
            log.exception("events connection failed at close")
        self._connection.disconnect()  # type: ignore[no-untyped-call]
        self._pool.disconnect()

    def _collect(self, *, wait: bool) -> None:
        try:
            while self._unread and (wait or self._connection.can_read(timeout=0)):
                self._unread -= 1
                try:
                    self._connection.read_response()
                except ResponseError:  # e.g. Redis out of memory: the job's reader will time out
                    log.exception("Redis refused an event")
        except (RedisConnectionError, RedisTimeoutError, OSError):
            log.exception("events connection lost while reading replies")
            self._reset()

    def _reset(self) -> None:
        self._connection.disconnect()  # type: ignore[no-untyped-call]
        self._unread = 0
