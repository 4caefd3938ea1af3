"""Live events of a candidate's session, and their Server-Sent Events stream.

The gateway's own submit and finish paths are where a session's news starts (an
answer scored, the next question ready, the interview finished), so they publish
here. Any gateway process may hold the candidate's stream, so with ``REDIS_URL``
events travel over Redis pub/sub, one channel per session; without it (development
only, as production requires Redis) they stay in this process. The orchestrator
publishes too (answers its background retry scored), so the channel and message
format are in :mod:`common.session_events`, which both services share.

A stream adds events of its own that need no publisher: ``time_warning`` when the
session's server deadline passes a threshold, ``time_up`` when it passes, and
``question_ready`` after an ``answer_scored`` whose result has a next question.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import datetime
from typing import Any, Protocol

import redis.asyncio as aioredis
from prometheus_client import Counter, Gauge
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

from common.session_events import (
    ANSWER_SCORED,
    CHANNEL_PREFIX,
    INTERVIEW_FINISHED,
    QUESTION_READY,
    channel,
    decode,
    encode,
)

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


class _LocalStream:
    """One open stream's queue of events in this process."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[Event | None] = asyncio.Queue(_MEMORY_QUEUE)
        self.error: RedisError | None = None

    def deliver(self, item: Event | None) -> None:
        if self.queue.full():
            # A stalled client loses its oldest events rather than the process its memory.
            self.queue.get_nowait()
        self.queue.put_nowait(item)

    def fail(self, error: RedisError) -> None:
        self.error = error
        self.deliver(None)

    async def next(self, timeout: float) -> Event | None:
        try:
            item = await asyncio.wait_for(self.queue.get(), timeout)
        except TimeoutError:
            return None
        if item is None:
            assert self.error is not None
            raise self.error
        return item


class _FanOut:
    """The streams open in this process, by session."""

    def __init__(self) -> None:
        self._streams: dict[str, set[_LocalStream]] = {}

    def count(self, session_id: str) -> int:
        return len(self._streams.get(session_id, ()))

    def add(self, session_id: str, stream: _LocalStream) -> None:
        self._streams.setdefault(session_id, set()).add(stream)

    def remove(self, session_id: str, stream: _LocalStream) -> None:
        remaining = self._streams.get(session_id, set())
        remaining.discard(stream)
        if not remaining:
            self._streams.pop(session_id, None)

    def deliver(self, session_id: str, event: Event) -> None:
        for stream in self._streams.get(session_id, ()):
            stream.deliver(event)

    def fail_all(self, error: RedisError) -> None:
        for streams in self._streams.values():
            for stream in streams:
                stream.fail(error)
        self._streams.clear()


class RedisEventBus:
    """Events over Redis pub/sub, shared by every gateway process.

    All streams of this process share one subscriber connection, and a reader task
    hands each message to the streams of its session. One connection per stream
    would cost a Redis client and a file descriptor on both sides for every open
    candidate page: at 10,000 candidates online, Redis's default client limit.

    Args:
        url: Redis URL.
        publish_timeout_s: Bound on one publish, paid by the submitting request.
        subscribe_timeout_s: Bound on Redis confirming a new stream's subscription.
    """

    def __init__(self, url: str, publish_timeout_s: float = 0.25, subscribe_timeout_s: float = 2.0) -> None:
        # No socket timeout: the subscriber waits on its socket for as long as any
        # stream is open.
        self._redis = aioredis.Redis.from_url(url, socket_connect_timeout=publish_timeout_s, retry=Retry(NoBackoff(), 0))
        self._publish_timeout_s = publish_timeout_s
        self._subscribe_timeout_s = subscribe_timeout_s
        self._streams = _FanOut()
        # Serialises SUBSCRIBE/UNSUBSCRIBE with the bookkeeping they follow, so a
        # session's channel is subscribed exactly while it has open streams.
        self._lock = asyncio.Lock()
        self._pubsub: aioredis.client.PubSub | None = None
        self._reader: asyncio.Task[None] | None = None
        self._pongs: dict[bytes, asyncio.Future[None]] = {}

    def subscribers(self, session_id: str) -> int:
        """How many streams of the session are open in this process."""
        return self._streams.count(session_id)

    async def publish(self, session_id: str, event: str, data: dict[str, Any]) -> None:
        try:
            async with asyncio.timeout(self._publish_timeout_s):
                await self._redis.publish(channel(session_id), encode(event, data))
        except (RedisError, OSError, TimeoutError) as exc:
            PUBLISH_ERRORS.inc()
            log.warning("could not publish %s of session %s (%r); the page still gets it from its request", event, session_id, exc)

    @asynccontextmanager
    async def subscribe(self, session_id: str) -> AsyncIterator[Subscription]:
        stream = _LocalStream()
        async with self._lock:
            pubsub = self._subscriber()
            if not self._streams.count(session_id):
                # Under the lock, so the command goes out after any UNSUBSCRIBE of the
                # same channel and before any later stream's confirming PING.
                await pubsub.subscribe(channel(session_id))
            self._streams.add(session_id, stream)
        try:
            await self._confirmed(pubsub)
            yield stream
        finally:
            # Shielded: this runs when the browser goes away and the stream is
            # cancelled, and the channel must still be released.
            await asyncio.shield(self._leave(session_id, stream, pubsub))

    def _subscriber(self) -> aioredis.client.PubSub:
        if self._pubsub is None:
            self._pubsub = self._redis.pubsub()
        return self._pubsub

    async def _confirmed(self, pubsub: aioredis.client.PubSub) -> None:
        """Returns once Redis has processed every command sent before it on the shared
        connection (a PING's reply comes back in order), so the stream's channel is live."""
        token = uuid.uuid4().hex.encode()
        pong = self._pongs[token] = asyncio.get_running_loop().create_future()
        try:
            await pubsub.ping(token)
            if self._reader is None:
                self._reader = asyncio.create_task(self._read(pubsub), name="event-bus-reader")
            async with asyncio.timeout(self._subscribe_timeout_s):
                await pong
        except TimeoutError as exc:
            raise RedisConnectionError("Redis did not confirm the subscription in time") from exc
        finally:
            self._pongs.pop(token, None)

    async def _read(self, pubsub: aioredis.client.PubSub) -> None:
        try:
            while True:
                message = await pubsub.get_message(timeout=None)
                if message is None:
                    continue
                if message["type"] == "message":
                    session_id = message["channel"].decode()[len(CHANNEL_PREFIX):]
                    try:
                        event = decode(message["data"])
                    except (ValueError, KeyError):
                        log.warning("dropped a malformed event of session %s", session_id)
                        continue
                    self._streams.deliver(session_id, event)
                elif message["type"] == "pong" and (pong := self._pongs.get(message["data"])) and not pong.done():
                    pong.set_result(None)
        except (RedisError, OSError) as exc:
            error = exc if isinstance(exc, RedisError) else RedisConnectionError(str(exc))
            log.warning("event subscriber lost Redis (%r); open streams end and their browsers reconnect", exc)
            async with self._lock:
                # Every open stream ends; the next one to open starts a fresh subscriber.
                self._streams.fail_all(error)
                for pong in self._pongs.values():
                    if not pong.done():
                        pong.set_exception(error)
                if self._pubsub is pubsub:
                    self._pubsub, self._reader = None, None
            await pubsub.aclose()

    async def _leave(self, session_id: str, stream: _LocalStream, pubsub: aioredis.client.PubSub) -> None:
        async with self._lock:
            self._streams.remove(session_id, stream)
            if self._streams.count(session_id) or self._pubsub is not pubsub:
                return
            try:
                await pubsub.unsubscribe(channel(session_id))
            except (RedisError, OSError) as exc:
                # The reader notices the broken connection and starts over.
                log.warning("could not unsubscribe session %s: %r", session_id, exc)

    async def close(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        if self._pubsub is not None:
            await self._pubsub.aclose()
        await self._redis.aclose()


class MemoryEventBus:
    """Events within this process, for development without Redis (production refuses it)."""

    def __init__(self) -> None:
        self._streams = _FanOut()

    def subscribers(self, session_id: str) -> int:
        """How many streams of the session are open in this process."""
        return self._streams.count(session_id)

    async def publish(self, session_id: str, event: str, data: dict[str, Any]) -> None:
        self._streams.deliver(session_id, (event, data))

    @asynccontextmanager
    async def subscribe(self, session_id: str) -> AsyncIterator[Subscription]:
        stream = _LocalStream()
        self._streams.add(session_id, stream)
        try:
            yield stream
        finally:
            self._streams.remove(session_id, stream)

    async def close(self) -> None:
        self._streams = _FanOut()


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
                if name == ANSWER_SCORED and data.get("next_question") is not None:
                    # Derived here rather than published: whoever announces a result (the
                    # gateway, or the orchestrator's background retry) sends one message.
                    yield format_event(QUESTION_READY, data["next_question"])
                if name == INTERVIEW_FINISHED:
                    return
    except RedisError as exc:
        # The browser reconnects after retry_ms; by then Redis may be back.
        log.warning("event stream of session %s ended: %r", session_id, exc)
    finally:
        OPEN_STREAMS.dec()
