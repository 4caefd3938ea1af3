"""Hot session state in Redis, rebuilt from PostgreSQL on a miss.

Redis is a cache here: PostgreSQL holds every session and the write path always
decides against PostgreSQL under a row lock. Redis spares the read path a database
round trip. When Redis is down or slow the store answers from PostgreSQL, logs, and
stops trying Redis for a short while so each request does not pay the timeout.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar

import redis.asyncio as aioredis
from prometheus_client import Counter
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from orchestrator.db import STATUS_FINISHED, Database, ItemRef, SessionRow, item_entry, item_from_entry

log = logging.getLogger(__name__)

T = TypeVar("T")

KEY_PREFIX = "xli:orchestrator:session:"
# Bump when the cached shape changes, so old entries read as misses instead of errors.
STATE_FORMAT = 3

REDIS_FALLBACKS = Counter(
    "xli_orchestrator_redis_fallbacks_total",
    "Session-state operations that skipped or failed Redis and used PostgreSQL",
    ["operation"],
)
# Writes only if the entry is absent or older, so a late write from a slow request
# (or a read that refills the cache) can never roll a session back.
_PUT_IF_NEWER = """
local current = redis.call('HGET', KEYS[1], 'rank')
if current and tonumber(current) >= tonumber(ARGV[1]) then
  return 0
end
redis.call('HSET', KEYS[1], 'rank', ARGV[1], 'state', ARGV[2])
redis.call('EXPIRE', KEYS[1], ARGV[3])
return 1
"""

STATE_LOOKUPS = Counter("xli_orchestrator_state_lookups_total", "Session-state lookups", ["source"])


@dataclass(frozen=True)
class SessionState:
    """What the interviewer needs to know about a session on every request.

    Attributes:
        session_id: The session.
        status: ``in_progress`` or ``finished``.
        position: 0-based index of the question being waited on.
        items: The item versions asked so far, the waiting one included; the engine
            appends the next one after each answer.
        max_items: The most questions the interview can have.
        deadline: When its time runs out (None for sessions from before time limits).
    """

    session_id: uuid.UUID
    status: str
    position: int
    items: tuple[ItemRef, ...]
    max_items: int = 0
    deadline: datetime | None = None

    @property
    def finished(self) -> bool:
        return self.status == STATUS_FINISHED

    @property
    def awaiting_selection(self) -> bool:
        """True when the last question is answered and the next is not chosen yet."""
        return not self.finished and self.position >= len(self.items)

    @property
    def rank(self) -> int:
        """Grows with every change a session can go through (answers and chosen items
        only accumulate, a session only ever becomes finished), so a cached entry can
        refuse an older one."""
        return (self.position + len(self.items)) * 2 + (1 if self.status == STATUS_FINISHED else 0)

    @classmethod
    def from_row(cls, row: SessionRow) -> SessionState:
        return cls(row.session_id, row.status, row.position, row.items, row.max_items, row.deadline)

    def dumps(self) -> str:
        return json.dumps(
            {
                "format": STATE_FORMAT,
                "status": self.status,
                "position": self.position,
                # The sessions.items entries: follow-up positions must survive the cache.
                "items": [item_entry(ref) for ref in self.items],
                "max_items": self.max_items,
                "deadline": None if self.deadline is None else self.deadline.isoformat(),
            },
            separators=(",", ":"),
        )

    @classmethod
    def loads(cls, session_id: uuid.UUID, raw: str | bytes) -> SessionState | None:
        """Parses a cached entry; None when it is from another format or damaged."""
        try:
            data = json.loads(raw)
            if data.get("format") != STATE_FORMAT:
                return None
            return cls(
                session_id,
                str(data["status"]),
                int(data["position"]),
                tuple(item_from_entry(entry) for entry in data["items"]),
                int(data["max_items"]),
                None if data["deadline"] is None else datetime.fromisoformat(data["deadline"]),
            )
        except (ValueError, KeyError, TypeError):
            return None


def create_redis_client(url: str, timeout_s: float) -> aioredis.Redis:
    """A Redis client that fails fast: socket timeouts and no retries.

    The caller falls back to PostgreSQL, so retrying inside the client would only
    stretch the time a request waits on a dead cache.
    """
    return aioredis.Redis.from_url(
        url,
        socket_timeout=timeout_s,
        socket_connect_timeout=timeout_s,
        retry=Retry(NoBackoff(), 0),
        decode_responses=True,
    )


class _Skipped(Exception):
    """Redis is being skipped after a recent failure."""


class SessionStateStore:
    """Session state read through Redis with PostgreSQL behind it.

    Args:
        redis: Client for the cache.
        db: The source of truth.
        ttl_s: How long a cached entry lives; bounds how long any stale entry can.
        timeout_s: Upper bound for one Redis call.
        retry_after_s: After a Redis failure, how long to go straight to PostgreSQL.
    """

    def __init__(
        self, redis: aioredis.Redis, db: Database, *, ttl_s: int, timeout_s: float, retry_after_s: float
    ) -> None:
        self._redis = redis
        self._db = db
        self._ttl_s = ttl_s
        self._timeout_s = timeout_s
        self._retry_after_s = retry_after_s
        self._put_if_newer = redis.register_script(_PUT_IF_NEWER)
        self._skip_until = 0.0
        # Sessions whose cached entry may be stale because a write to Redis failed;
        # they are read from PostgreSQL and their keys deleted once Redis is back.
        self._dirty: set[uuid.UUID] = set()

    @staticmethod
    def key(session_id: uuid.UUID) -> str:
        """The Redis key of a session's state."""
        return f"{KEY_PREFIX}{session_id}"

    async def _call(self, operation: str, fn: Callable[[], Awaitable[T]]) -> T:
        if time.monotonic() < self._skip_until:
            REDIS_FALLBACKS.labels(operation).inc()
            raise _Skipped
        try:
            async with asyncio.timeout(self._timeout_s):
                if self._dirty:
                    stale = list(self._dirty)
                    await self._redis.delete(*(self.key(s) for s in stale))
                    self._dirty.difference_update(stale)
                return await fn()
        except (RedisError, OSError, TimeoutError) as exc:
            REDIS_FALLBACKS.labels(operation).inc()
            self._skip_until = time.monotonic() + self._retry_after_s
            log.warning(
                "Redis failed during %s (%r); using PostgreSQL, retrying Redis in %.1fs",
                operation, exc, self._retry_after_s,
            )
            raise _Skipped from exc

    async def get(self, session_id: uuid.UUID) -> SessionState | None:
        """The session's state, or None when the session does not exist.

        Raises:
            Unavailable: When the state is not cached and PostgreSQL is unavailable.
        """
        if session_id not in self._dirty:
            try:
                raw = await self._call("get", lambda: self._redis.hget(self.key(session_id), "state"))
            except _Skipped:
                raw = None
            if raw is not None:
                state = SessionState.loads(session_id, raw)
                if state is not None:
                    STATE_LOOKUPS.labels("redis").inc()
                    return state
        STATE_LOOKUPS.labels("postgres").inc()
        row = await self._db.get_session(session_id)
        if row is None:
            return None
        state = SessionState.from_row(row)
        await self.put(state)
        return state

    async def put(self, state: SessionState) -> None:
        """Caches ``state`` unless a newer state is cached.

        A Redis failure is logged and remembered, never raised: the session's entry is
        then treated as stale until it can be deleted.
        """
        try:
            await self._call(
                "put",
                lambda: self._put_if_newer(
                    keys=[self.key(state.session_id)], args=[state.rank, state.dumps(), self._ttl_s]
                ),
            )
        except _Skipped:
            self._dirty.add(state.session_id)

    async def invalidate(self, session_id: uuid.UUID) -> None:
        """Drops the cached state so the next read comes from PostgreSQL."""
        try:
            await self._call("invalidate", lambda: self._redis.delete(self.key(session_id)))
        except _Skipped:
            self._dirty.add(session_id)

    async def close(self) -> None:
        """Closes the Redis client."""
        try:
            await asyncio.wait_for(self._redis.aclose(), timeout=self._timeout_s)
        except (RedisError, OSError, TimeoutError):
            pass
