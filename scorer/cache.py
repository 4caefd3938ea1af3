"""Caches: finished scores in Redis, formula grades and reference embeddings in process.

A cached score is only ever a score some model produced earlier for the same item
version, normalised answer and model versions; it keeps that score's provenance and
adds the signal ``cache.redis``. Redis trouble never fails a request: the score is
computed as if the cache were empty, and the error is counted and logged.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import time
import unicodedata
from collections import OrderedDict
from collections.abc import Hashable, Iterable, Sequence
from typing import Generic, TypeVar

import redis.asyncio as redis
from prometheus_client import Counter

from xlinterview.v1 import common_pb2

log = logging.getLogger(__name__)

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

SIGNAL_CACHE = "cache.redis"
CACHE_LOOKUPS = Counter("xli_scorer_cache_lookups_total", "Cache lookups per answer", ["cache", "result"])
CACHE_ERRORS = Counter("xli_scorer_cache_errors_total", "Redis cache operations that failed", ["op"])

_SPACES = re.compile(r"\s+")


def normalise_answer(kind: int, text: str) -> str:
    """The form of an answer two submissions must share to share a cached score.

    Free text is NFC-normalised with runs of whitespace collapsed (its features and the
    encoder ignore layout). A formula is only trimmed: spaces inside a string literal
    change its value.
    """
    if kind == common_pb2.QUESTION_KIND_FREE_TEXT:
        return _SPACES.sub(" ", unicodedata.normalize("NFC", text)).strip()
    return text.strip()


def item_digest(item: common_pb2.ScoringItem) -> str:
    """A digest of everything in the item, so an item changed without a version bump
    cannot reuse another item's cached results."""
    return hashlib.sha256(item.SerializeToString(deterministic=True)).hexdigest()[:32]


class LruCache(Generic[K, V]):
    """A bounded in-process least-recently-used map.

    Args:
        name: Label for the lookup metrics.
        capacity: Most entries kept.
    """

    def __init__(self, name: str, capacity: int) -> None:
        self._name = name
        self._capacity = capacity
        self._data: OrderedDict[K, V] = OrderedDict()
        self._hits = CACHE_LOOKUPS.labels(name, "hit")
        self._misses = CACHE_LOOKUPS.labels(name, "miss")

    def get(self, key: K) -> V | None:
        """The value, marked recently used, or None."""
        return self.get_many((key,))[0]

    def get_many(self, keys: Sequence[K]) -> list[V | None]:
        """The values of many keys (None where missing), counted in the metrics once per call."""
        data, found, hits = self._data, [], 0
        for key in keys:
            value = data.get(key)
            if value is not None:
                data.move_to_end(key)
                hits += 1
            found.append(value)
        if hits:
            self._hits.inc(hits)
        if hits < len(found):
            self._misses.inc(len(found) - hits)
        return found

    def put(self, key: K, value: V) -> None:
        """Stores a value, evicting the least recently used beyond capacity."""
        self.put_many(((key, value),))

    def put_many(self, entries: Iterable[tuple[K, V]]) -> None:
        """Stores many values; the least recently used beyond capacity are evicted once, at the end."""
        data = self._data
        for key, value in entries:
            data[key] = value
            data.move_to_end(key)
        while len(data) > self._capacity:
            data.popitem(last=False)

    def __len__(self) -> int:
        return len(self._data)


class RedisScoreCache:
    """Finished scores in Redis, keyed by item version, normalised answer and model versions.

    Args:
        url: ``redis://`` URL.
        ttl_s: Lifetime of an entry.
        timeout_s: Longest a Redis operation may take before it counts as a miss.
        max_pending_writes: Writes queued beyond this are dropped (a cache may forget).
    """

    def __init__(self, url: str, ttl_s: int = 86_400, timeout_s: float = 0.05, max_pending_writes: int = 64) -> None:
        self._client = redis.Redis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s)
        self._ttl_s = ttl_s
        self._writes: set[asyncio.Task[None]] = set()
        self._max_pending_writes = max_pending_writes
        self._last_error_log = 0.0

    @staticmethod
    def key(item: common_pb2.ScoringItem, digest: str, answer: str, model_versions: Sequence[str], code: str) -> str:
        """The Redis key of one answer's score.

        Args:
            item: The item (its id and version are written in clear for inspection).
            digest: :func:`item_digest` of the item.
            answer: The normalised answer.
            model_versions: ``name:version`` of every model that would score it.
            code: Code version.
        """
        h = hashlib.sha256("\x1f".join([digest, *model_versions, code, answer]).encode("utf-8")).hexdigest()
        return f"xli:score:v1:{item.item_id}@{item.item_version}:{h}"

    async def get_many(self, keys: Sequence[str]) -> list[common_pb2.Score | None]:
        """Looks up scores in one round trip; misses (and Redis failures) are None."""
        try:
            raw = await self._client.mget(keys)
        except (redis.RedisError, OSError, asyncio.TimeoutError) as exc:
            self._failed("get", exc)
            raw = [None] * len(keys)
        found: list[common_pb2.Score | None] = []
        for value in raw:
            if value is None:
                found.append(None)
                continue
            score = common_pb2.Score()
            score.ParseFromString(value)
            found.append(score)
        hits = sum(s is not None for s in found)
        CACHE_LOOKUPS.labels("redis", "hit").inc(hits)
        CACHE_LOOKUPS.labels("redis", "miss").inc(len(found) - hits)
        return found

    def put_many(self, entries: Sequence[tuple[str, common_pb2.Score]]) -> None:
        """Stores scores in the background, so the caller does not wait for Redis."""
        if not entries:
            return
        if len(self._writes) >= self._max_pending_writes:
            CACHE_ERRORS.labels("put_dropped").inc()
            return
        task = asyncio.create_task(self._put(entries))
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)

    async def _put(self, entries: Sequence[tuple[str, common_pb2.Score]]) -> None:
        try:
            async with self._client.pipeline(transaction=False) as pipe:
                for key, score in entries:
                    pipe.set(key, score.SerializeToString(), ex=self._ttl_s)
                await pipe.execute()
        except (redis.RedisError, OSError, asyncio.TimeoutError) as exc:
            self._failed("put", exc)

    async def flush(self) -> None:
        """Waits for background writes (tests and shutdown)."""
        if self._writes:
            await asyncio.gather(*self._writes, return_exceptions=True)

    def _failed(self, op: str, exc: BaseException) -> None:
        CACHE_ERRORS.labels(op).inc()
        now = time.monotonic()
        if now - self._last_error_log > 10.0:  # one line per 10 s, not one per request
            self._last_error_log = now
            log.warning("redis cache %s failed; scoring without the cache: %s", op, exc)

    async def close(self) -> None:
        """Finishes writes and closes the connection pool."""
        await self.flush()
        await self._client.aclose()
