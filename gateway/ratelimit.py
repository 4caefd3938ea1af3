"""Fixed-window rate limits, shared by all gateways through Redis.

A window is one minute: the first request in a window creates a counter that
expires with the window, every request increments it, and a request over the limit
gets 429 with ``Retry-After`` set to the seconds left in the window. Fixed windows
let a client send up to twice the limit across a window edge; that is acceptable for
abuse protection and cheap: every limit that applies to a request is counted in one
Redis round trip (one script call), however many there are.

When Redis fails the request is let through and the failure logged: an outage of
the limiter must not become an outage of interviews.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from typing import NamedTuple, Protocol

import redis.asyncio as aioredis
from prometheus_client import Counter
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from gateway.problems import ProblemError

log = logging.getLogger(__name__)

WINDOW_S = 60
KEY_PREFIX = "xli:gateway:rl:"

RATE_LIMITED = Counter("xli_gateway_rate_limited_total", "Requests refused by a rate limit", ["bucket"])
LIMITER_ERRORS = Counter("xli_gateway_rate_limiter_errors_total", "Rate-limit checks that failed open")

# Counts a hit on each key in order, starting a key's expiry on its first hit, and
# stops at the first key over its limit, so a refused request is not counted in the
# buckets after it (as if each limit were checked on its own, in order). Returns the
# 1-based index of that key and the milliseconds left in its window, or {0, 0}.
# ARGV[1] is the window in ms; ARGV[i + 1] is the limit of KEYS[i].
_HIT = """
for i, key in ipairs(KEYS) do
  local count = redis.call('INCR', key)
  if count == 1 then
    redis.call('PEXPIRE', key, ARGV[1])
  end
  if count > tonumber(ARGV[i + 1]) then
    return {i, redis.call('PTTL', key)}
  end
end
return {0, 0}
"""


class Check(NamedTuple):
    """One limit that applies to a request.

    Attributes:
        bucket: What is limited, e.g. ``ip`` or ``api_key``; part of the counter key.
        key: Whose requests, e.g. the client IP.
        limit: Requests allowed per window.
    """

    bucket: str
    key: str
    limit: int

    @property
    def counter(self) -> str:
        """The counter's name within the limiter."""
        return f"{self.bucket}:{self.key}"


class Limiter(Protocol):
    """Counts hits within the current window."""

    async def hit(self, checks: Sequence[Check]) -> tuple[int, float] | None:
        """Counts one hit on each check's counter in order, stopping at the first over its limit.

        Returns:
            None when every check is within its limit; otherwise ``(index, seconds_left)``
            of the first check over its limit and of its current window.
        """
        ...

    async def close(self) -> None:
        """Releases the limiter's connections."""
        ...


class RedisLimiter:
    """Counters in Redis, shared by every gateway process.

    Args:
        url: Redis URL.
        timeout_s: Bound on one Redis call; short, as it is paid on every request.
    """

    def __init__(self, url: str, timeout_s: float = 0.25) -> None:
        self._redis = aioredis.Redis.from_url(
            url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s, retry=Retry(NoBackoff(), 0)
        )
        self._script = self._redis.register_script(_HIT)

    async def hit(self, checks: Sequence[Check]) -> tuple[int, float] | None:
        index, pttl = await self._script(
            keys=[KEY_PREFIX + c.counter for c in checks], args=[WINDOW_S * 1000, *(c.limit for c in checks)]
        )
        if not index:
            return None
        return int(index) - 1, max(int(pttl), 0) / 1000

    async def close(self) -> None:
        await self._redis.aclose()


class MemoryLimiter:
    """Counters in this process, for development without Redis (production refuses it)."""

    def __init__(self) -> None:
        self._windows: dict[str, tuple[float, int]] = {}

    async def hit(self, checks: Sequence[Check]) -> tuple[int, float] | None:
        now = time.monotonic()
        for index, check in enumerate(checks):
            ends, count = self._windows.get(check.counter, (0.0, 0))
            if now >= ends:
                if len(self._windows) > 100_000:
                    # Forget expired windows now and then, so the dict cannot grow forever.
                    self._windows = {k: v for k, v in self._windows.items() if v[0] > now}
                ends, count = now + WINDOW_S, 0
            self._windows[check.counter] = (ends, count + 1)
            if count + 1 > check.limit:
                return index, ends - now
        return None

    async def close(self) -> None:
        self._windows.clear()


async def enforce(limiter: Limiter, *checks: Check) -> None:
    """Counts a request against every check, in order, and refuses it over any limit.

    Args:
        limiter: Where the counters live.
        checks: The limits that apply; the first one over its limit refuses the
            request and the ones after it are not counted.

    Raises:
        ProblemError: 429 with ``Retry-After`` when over a limit.
    """
    try:
        refused = await limiter.hit(checks)
    except (RedisError, OSError, TimeoutError) as exc:
        LIMITER_ERRORS.inc()
        log.warning("rate limiter unavailable (%r); letting the request through", exc)
        return
    if refused is not None:
        index, seconds_left = refused
        RATE_LIMITED.labels(checks[index].bucket).inc()
        retry_after = max(1, math.ceil(seconds_left))
        raise ProblemError(
            429,
            "rate-limited",
            "Too many requests",
            f"Too many requests; try again in {retry_after} s.",
            headers={"Retry-After": str(retry_after)},
        )
