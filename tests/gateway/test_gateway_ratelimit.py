"""The Redis limiter on a real Redis: concurrent callers, a flushed script cache, a dropped or
unreachable server, the URL's database, and the 429 it leads to."""

from __future__ import annotations

import asyncio
import pytest
import redis

from gateway.problems import ProblemError
from gateway.ratelimit import KEY_PREFIX, Check, RedisLimiter, enforce


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> object:
    from stack.backing import EmbeddedRedis

    with EmbeddedRedis(tmp_path_factory.mktemp("redis")) as server:
        yield server.url


async def test_concurrent_hits_each_get_their_own_reply(redis_url: str) -> None:
    # A generous timeout: 50 calls at once open 50 connections, which on a busy machine can
    # take longer than the production bound, and this test is about replies, not timeouts.
    limiter = RedisLimiter(redis_url, timeout_s=10)
    try:
        # Made at once, each with its own limit: each reply must reach the call it answers.
        first = await asyncio.gather(*(limiter.hit([Check("ip", f"pipelined-{i}", i % 2)]) for i in range(50)))
        assert [refused is None for refused in first] == [i % 2 == 1 for i in range(50)]
        assert all(refused[0] == 0 and 0 < refused[1] <= 60 for refused in first if refused is not None)
        second = await asyncio.gather(*(limiter.hit([Check("ip", f"pipelined-{i}", 1)]) for i in range(50)))
        assert all(refused is not None for refused in second)
    finally:
        await limiter.close()


async def test_a_flushed_script_cache_and_a_dropped_connection_are_survived(redis_url: str) -> None:
    limiter = RedisLimiter(redis_url)
    admin = redis.Redis.from_url(redis_url)
    try:
        assert await limiter.hit([Check("ip", "flushed", 5)]) is None
        admin.script_flush()  # the next EVALSHA is answered NOSCRIPT
        assert await limiter.hit([Check("ip", "flushed", 5)]) is None
        admin.client_kill_filter(_type="normal", skipme=True)  # the limiter's connection goes away
        await enforce(limiter, Check("ip", "flushed", 5))  # sent on the dead connection: let through, uncounted
        assert await limiter.hit([Check("ip", "flushed", 5)]) is None  # a new connection
        assert admin.get(KEY_PREFIX + "ip:flushed") == b"3"
    finally:
        admin.close()
        await limiter.close()


async def test_the_urls_database_is_used(redis_url: str) -> None:
    limiter = RedisLimiter(redis_url.rsplit("/", 1)[0] + "/3")
    admin = redis.Redis.from_url(redis_url.rsplit("/", 1)[0] + "/3")
    try:
        assert await limiter.hit([Check("ip", "db-three", 5)]) is None
        assert admin.get(KEY_PREFIX + "ip:db-three") == b"1"
    finally:
        admin.close()
        await limiter.close()


async def test_an_unreachable_redis_lets_requests_through() -> None:
    from stack.backing import free_port

    limiter = RedisLimiter(f"redis://127.0.0.1:{free_port()}/0")
    try:
        # Every caller waiting on the same failed connection attempt is let through.
        await asyncio.gather(*(enforce(limiter, Check("ip", "nobody-listens", 0)) for _ in range(3)))
    finally:
        await limiter.close()


async def test_over_the_limit_is_refused_with_retry_after(redis_url: str) -> None:
    limiter = RedisLimiter(redis_url)
    try:
        with pytest.raises(ProblemError) as refused:
            await enforce(limiter, Check("ip", "nothing-allowed", 0))
        assert refused.value.status == 429 and 1 <= int(refused.value.headers["Retry-After"]) <= 60
    finally:
        await limiter.close()
