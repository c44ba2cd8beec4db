"""Appends events to their jobs' streams from an engine thread, without waiting for Redis.

Each decode step's events go out as one pipelined packet on the writer's own connection; the
replies are read later (whatever has arrived by the next step, all of them before the thread
sleeps), so a decode step never waits for a Redis round trip, and the worker's event loop is
not woken once per token. One connection per engine thread keeps every event of a job on one
connection, hence in order.
"""

from __future__ import annotations

import collections
import logging
import math
import time
from collections.abc import Sequence
from typing import Any

from redis.exceptions import ResponseError

from herd import protocol
from herd.redis_client import RETRIED, sync_pool

log = logging.getLogger(__name__)

_CONNECTION_ERRORS = (*RETRIED, OSError)

# An events stream lives EVENTS_TTL_MS (10 min) past its last renewal; renewing once a minute
# keeps a long generation's stream alive with one PEXPIRE a minute instead of one per token.
TTL_RENEW_S = 60.0
_TTL_TRACKED = 4096  # renewal times kept before the finished jobs' ones are dropped
_MAX_UNREAD = 4096  # replies left unread before a write waits for them (bounds what Redis buffers)
CLIENT_NAME = "herd-events"  # how the writers' connections show in CLIENT LIST
_MAX_PENDING = 10_000  # steps kept for resending while Redis is unreachable
_SOCKET_TIMEOUT_S = 30.0  # a Redis that stopped answering must not hold the engine thread forever


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

    def forget(self, keys: Sequence[str]) -> None:
        """Their TTL was not set after all (the write failed): due again next time."""
        for key in keys:
            self._renewed.pop(key, None)


class EventWriter:
    """A non-waiting writer of (events key, encoded event) pairs; use from one thread only.

    A packet stays pending until Redis has answered all its commands. When the connection is
    lost, the pending packets are sent again on a new one, so an event in flight is not lost;
    one written twice is harmless (readers skip an (attempt, seq) they have seen)."""

    def __init__(self, redis_url: str) -> None:
        self._pool = sync_pool(redis_url, socket_timeout=_SOCKET_TIMEOUT_S, client_name=CLIENT_NAME)
        self._connection = self._pool.make_connection()
        self._pending: collections.deque[_Packet] = collections.deque()  # sent, not yet fully answered
        self._ttl = TtlClock()

    def write(self, entries: Sequence[tuple[str, bytes]]) -> None:
        """Send the XADDs (and due PEXPIREs) in one packet; collect the replies already here."""
        if not entries:
            return
        commands: list[tuple[object, ...]] = [
            ("XADD", key, "MAXLEN", "~", protocol.EVENTS_MAXLEN, "*", "m", data) for key, data in entries
        ]
        commands += [("PEXPIRE", key, protocol.EVENTS_TTL_MS) for key in self._ttl.due({key for key, _ in entries})]
        packet = _Packet(self._connection.pack_commands(commands), len(commands))  # type: ignore[no-untyped-call]
        self._pending.append(packet)
        if len(self._pending) > _MAX_PENDING:
            log.error("Redis is unreachable: dropped the events of %d steps", len(self._pending) - _MAX_PENDING)
            while len(self._pending) > _MAX_PENDING:
                self._pending.popleft()
        try:
            self._send(packet)
        except _CONNECTION_ERRORS:
            self._recover()
        self._collect(wait=sum(p.unanswered for p in self._pending) > _MAX_UNREAD)

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

    def _send(self, packet: _Packet) -> None:
        self._connection.send_packed_command(packet.data, check_health=False)  # type: ignore[no-untyped-call]

    def _recover(self) -> None:
        """A new connection, and every pending packet sent again on it (once more if needed)."""
        for attempt in range(2):
            log.warning("events connection lost; reconnecting", exc_info=attempt > 0)
            self._connection.disconnect()  # type: ignore[no-untyped-call]
            try:
                for packet in self._pending:
                    packet.unanswered = packet.commands
                    self._send(packet)
                return
            except _CONNECTION_ERRORS:
                continue
        # Kept pending: the next write tries again.
        self._connection.disconnect()  # type: ignore[no-untyped-call]

    def _collect(self, *, wait: bool) -> None:
        try:
            while self._pending and (wait or self._connection.can_read(timeout=0)):
                try:
                    self._connection.read_response()
                except ResponseError:  # e.g. Redis out of memory: the job's reader will time out
                    log.exception("Redis refused an event")
                packet = self._pending[0]
                packet.unanswered -= 1
                if packet.unanswered == 0:
                    self._pending.popleft()
        except _CONNECTION_ERRORS:
            self._recover()


class _Packet:
    __slots__ = ("commands", "data", "unanswered")

    def __init__(self, data: Any, commands: int) -> None:
        self.data = data
        self.commands = commands
        self.unanswered = commands
