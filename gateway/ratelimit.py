"""Fixed-window rate limits, shared by all gateways through Redis.

A window is one minute: the first request in a window creates a counter that
expires with the window, every request increments it, and a request over the limit
gets 429 with ``Retry-After`` set to the seconds left in the window. Fixed windows
let a client send up to twice the limit across a window edge; that is acceptable for
abuse protection and costs one Redis round trip per check.

When Redis fails the request is let through and the failure logged: an outage of
the limiter must not become an outage of interviews.
"""

from __future__ import annotations

import logging
import math
import time
from typing import Protocol

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

# Increments the window's counter, starting its expiry on the first hit; returns the
# count and the milliseconds left in the window.
_HIT = """
local count = redis.call('INCR', KEYS[1])
if count == 1 then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
end
return {count, redis.call('PTTL', KEYS[1])}
"""


class Limiter(Protocol):
    """Counts hits of one key within the current window."""

    async def hit(self, key: str) -> tuple[int, float]:
        """Records a hit.

        Returns:
            ``(count, seconds_left)`` of the key's current window.
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

    async def hit(self, key: str) -> tuple[int, float]:
        count, pttl = await self._script(keys=[KEY_PREFIX + key], args=[WINDOW_S * 1000])
        return int(count), max(int(pttl), 0) / 1000

    async def close(self) -> None:
        await self._redis.aclose()


class MemoryLimiter:
    """Counters in this process, for development without Redis (production refuses it)."""

    def __init__(self) -> None:
        self._windows: dict[str, tuple[float, int]] = {}

    async def hit(self, key: str) -> tuple[int, float]:
        now = time.monotonic()
        ends, count = self._windows.get(key, (0.0, 0))
        if now >= ends:
            if len(self._windows) > 100_000:
                # Forget expired windows now and then, so the dict cannot grow forever.
                self._windows = {k: v for k, v in self._windows.items() if v[0] > now}
            ends, count = now + WINDOW_S, 0
        self._windows[key] = (ends, count + 1)
        return count + 1, ends - now

    async def close(self) -> None:
        self._windows.clear()


async def enforce(limiter: Limiter, bucket: str, key: str, limit: int) -> None:
    """Counts a request against ``bucket``/``key`` and refuses it over ``limit``.

    Args:
        limiter: Where the counters live.
        bucket: What is limited, e.g. ``ip`` or ``api_key``; part of the counter key.
        key: Whose requests, e.g. the client IP.
        limit: Requests allowed per window.

    Raises:
        ProblemError: 429 with ``Retry-After`` when over the limit.
    """
    try:
        count, seconds_left = await limiter.hit(f"{bucket}:{key}")
    except (RedisError, OSError, TimeoutError) as exc:
        LIMITER_ERRORS.inc()
        log.warning("rate limiter unavailable (%r); letting the request through", exc)
        return
    if count > limit:
        RATE_LIMITED.labels(bucket).inc()
        retry_after = max(1, math.ceil(seconds_left))
        raise ProblemError(
            429,
            "rate-limited",
            "Too many requests",
            f"Too many requests; try again in {retry_after} s.",
            headers={"Retry-After": str(retry_after)},
        )
