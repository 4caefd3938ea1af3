"""Live events of a candidate's session, and their Server-Sent Events stream.

The gateway's own submit and finish paths are where a session's news starts (an
answer scored, the next question ready, the interview finished), so they publish
here. Any gateway process may hold the candidate's stream, so with ``REDIS_URL``
events travel over Redis pub/sub, one channel per session; without it (development
only, as production requires Redis) they stay in this process. The orchestrator
publishes too (answers its background retry scored), so the channel and message
format are in :mod:`common.session_events`, which both services share.

A stream adds events of its own that need no publisher: ``time_warning`` when the
session's server deadline passes a threshold, and ``time_up`` when it passes.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import datetime
from typing import Any, Protocol

import redis.asyncio as aioredis
from prometheus_client import Counter, Gauge
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from common.session_events import channel, decode, encode

log = logging.getLogger(__name__)

# Events queued for one slow local stream before the oldest are dropped; a candidate
# sees a handful of events per question, so this is only reached by a stalled client.
_MEMORY_QUEUE = 64

OPEN_STREAMS = Gauge("xli_gateway_event_streams", "Server-Sent Events streams open in this process")
PUBLISH_ERRORS = Counter("xli_gateway_event_publish_errors_total", "Session events that could not be published")

Event = tuple[str, dict[str, Any]]
"""An event's name and its JSON payload."""


class Subscription(Protocol):
    """The events of one session, as they are published."""

    async def next(self, timeout: float) -> Event | None:
        """The next event, or None when none arrives within ``timeout`` seconds.

        Raises:
            RedisError: When the event source fails; the stream then ends and the
                browser reconnects.
        """
        ...


class EventBus(Protocol):
    """Publishes session events and subscribes to them."""

    async def publish(self, session_id: str, event: str, data: dict[str, Any]) -> None:
        """Sends an event to every stream of the session; never raises (a lost event
        must not fail the request that caused it)."""
        ...

    def subscribe(self, session_id: str) -> AbstractAsyncContextManager[Subscription]:
        """Receives the session's events from now until the context exits."""
        ...

    async def close(self) -> None:
        """Releases the bus's connections."""
        ...


class _RedisSubscription:
    def __init__(self, pubsub: aioredis.client.PubSub) -> None:
        self._pubsub = pubsub

    async def next(self, timeout: float) -> Event | None:
        ends = time.monotonic() + timeout
        while (left := ends - time.monotonic()) > 0:
            # Subscribe confirmations come back as None too, so wait out the rest.
            message = await self._pubsub.get_message(ignore_subscribe_messages=True, timeout=left)
            if message is not None and message.get("type") == "message":
                return decode(message["data"])
        return None


class RedisEventBus:
    """Events over Redis pub/sub, shared by every gateway process.

    Each open stream holds one Redis connection for its subscription: simple, and a
    Redis server holds tens of thousands, far more than candidates online at once.

    Args:
        url: Redis URL.
        publish_timeout_s: Bound on one publish, paid by the submitting request.
    """

    def __init__(self, url: str, publish_timeout_s: float = 0.25) -> None:
        # No socket timeout: a subscription waits on its socket for as long as the
        # stream is open; reads are bounded by get_message's own timeout instead.
        self._redis = aioredis.Redis.from_url(url, socket_connect_timeout=publish_timeout_s, retry=Retry(NoBackoff(), 0))
        self._publish_timeout_s = publish_timeout_s

    async def publish(self, session_id: str, event: str, data: dict[str, Any]) -> None:
        try:
            async with asyncio.timeout(self._publish_timeout_s):
                await self._redis.publish(channel(session_id), encode(event, data))
        except (RedisError, OSError, TimeoutError) as exc:
            PUBLISH_ERRORS.inc()
            log.warning("could not publish %s of session %s (%r); the page still gets it from its request", event, session_id, exc)

    @asynccontextmanager
    async def subscribe(self, session_id: str) -> AsyncIterator[Subscription]:
        pubsub = self._redis.pubsub()
        try:
            await pubsub.subscribe(channel(session_id))
            yield _RedisSubscription(pubsub)
        finally:
            # Shielded: this runs when the browser goes away and the stream is
            # cancelled, and the connection must still go back unsubscribed.
            await asyncio.shield(pubsub.aclose())

    async def close(self) -> None:
        await self._redis.aclose()


class _MemorySubscription:
    def __init__(self) -> None:
        self.queue: asyncio.Queue[Event] = asyncio.Queue(_MEMORY_QUEUE)

    async def next(self, timeout: float) -> Event | None:
        try:
            return await asyncio.wait_for(self.queue.get(), timeout)
        except TimeoutError:
            return None


class MemoryEventBus:
    """Events within this process, for development without Redis (production refuses it)."""

    def __init__(self) -> None:
        self._subscribers: dict[str, set[_MemorySubscription]] = {}

    def subscribers(self, session_id: str) -> int:
        """How many streams of the session are open in this process."""
        return len(self._subscribers.get(session_id, ()))

    async def publish(self, session_id: str, event: str, data: dict[str, Any]) -> None:
        for subscription in self._subscribers.get(session_id, ()):
            if subscription.queue.full():
                subscription.queue.get_nowait()
            subscription.queue.put_nowait((event, data))

    @asynccontextmanager
    async def subscribe(self, session_id: str) -> AsyncIterator[Subscription]:
        subscription = _MemorySubscription()
        self._subscribers.setdefault(session_id, set()).add(subscription)
        try:
            yield subscription
        finally:
            remaining = self._subscribers[session_id]
            remaining.discard(subscription)
            if not remaining:
                del self._subscribers[session_id]

    async def close(self) -> None:
        self._subscribers.clear()


def format_event(event: str, data: dict[str, Any]) -> str:
    """One Server-Sent Event: its name and its JSON payload on one ``data`` line."""
    # json.dumps escapes newlines inside strings, so the payload is always one line.
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


async def session_stream(
    bus: EventBus,
    session_id: str,
    deadline: datetime | None,
    warnings_s: Sequence[int],
    keepalive_s: float,
    retry_ms: int,
) -> AsyncIterator[str]:
    """The ``text/event-stream`` body of one session's events.

    Ends after ``interview_finished`` or ``time_up``; when the browser disconnects
    the server cancels it, which closes the subscription.

    Args:
        bus: Where the session's events are published.
        session_id: The session.
        deadline: The session's server deadline, or None when it has none.
        warnings_s: Seconds left at which ``time_warning`` is sent; thresholds
            already passed when the stream opens are not sent again.
        keepalive_s: Longest silence before a comment line, so proxies keep the
            connection open and a gone client is noticed.
        retry_ms: How long the browser waits before reconnecting.
    """
    ends = deadline.timestamp() if deadline is not None else None
    # Reading the clock through one function keeps warnings and the wait consistent.
    remaining = (lambda: ends - time.time()) if ends is not None else (lambda: float("inf"))
    pending = sorted((s for s in warnings_s if s < remaining()), reverse=True)
    OPEN_STREAMS.inc()
    try:
        async with bus.subscribe(session_id) as subscription:
            # Sent only once subscribed: an event published after the browser sees
            # the stream open is never missed.
            yield f"retry: {retry_ms}\n: subscribed\n\n"
            while True:
                left = remaining()
                if left <= 0:
                    yield format_event("time_up", {"deadline": deadline.isoformat() if deadline else None})
                    return
                due = [s for s in pending if left <= s]
                if due:
                    pending = [s for s in pending if s not in due]
                    yield format_event(
                        "time_warning",
                        {"seconds_left": int(left), "threshold_s": min(due), "deadline": deadline.isoformat() if deadline else None},
                    )
                wait = min(keepalive_s, left - pending[0] if pending else left)
                received = await subscription.next(max(wait, 0.01))
                if received is None:
                    if wait >= keepalive_s:
                        yield ": keep-alive\n\n"
                    continue
                name, data = received
                yield format_event(name, data)
                if name == "interview_finished":
                    return
    except RedisError as exc:
        # The browser reconnects after retry_ms; by then Redis may be back.
        log.warning("event stream of session %s ended: %r", session_id, exc)
    finally:
        OPEN_STREAMS.dec()
