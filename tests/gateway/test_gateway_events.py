"""Server-Sent Events of a candidate's session, over real HTTP (uvicorn) and real Redis."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from common import session_events
from common.session_events import CHANNEL_PREFIX
from gateway.events import RedisEventBus
from gateway.settings import GatewaySettings
from gateway_fakes import FakeServer, serve, sign_in, start_as_candidate


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    from stack.backing import EmbeddedRedis

    with EmbeddedRedis(Path(tmp_path_factory.mktemp("gateway-redis"))) as server:
        yield server.url


class Stream:
    """Reads one ``text/event-stream`` response: events as (name, data), comments as ("", text)."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self._lines = response.aiter_lines()

    async def next(self, timeout: float = 5.0) -> tuple[str, object]:
        name, data = "", None
        async with asyncio.timeout(timeout):
            async for line in self._lines:
                if line.startswith(":"):
                    return "", line[1:].strip()
                if line.startswith("event:"):
                    name = line[6:].strip()
                elif line.startswith("data:"):
                    data = json.loads(line[5:])
                elif line == "" and name:
                    return name, data
        raise EOFError("the stream ended")

    async def until(self, wanted: str, timeout: float = 5.0) -> object:
        """The data of the next ``wanted`` event, skipping comments."""
        while True:
            name, data = await self.next(timeout)
            if name == wanted:
                return data
            assert name == "", f"unexpected event {name}: {data}"


@asynccontextmanager
async def open_stream(http: httpx.AsyncClient, session_id: str) -> AsyncIterator[Stream]:
    async with http.stream("GET", f"/api/v1/sessions/{session_id}/events") as response:
        assert response.status_code == 200, await response.aread()
        stream = Stream(response)
        # The first comment arrives once the stream is subscribed.
        assert await stream.next() == ("", "subscribed")
        yield stream


async def test_events_reach_a_stream_held_by_another_gateway_process(
    orchestrator: FakeServer, redis_url: str
) -> None:
    settings = GatewaySettings(orchestrator_address=orchestrator.address, redis_url=redis_url)
    async with serve(settings) as first, serve(settings) as second:
        async with httpx.AsyncClient(base_url=first, timeout=10) as a, httpx.AsyncClient(base_url=second, timeout=10) as b:
            started = await start_as_candidate(a, orchestrator)
            b.headers["authorization"] = a.headers["authorization"]
            session_id = started["session"]["session_id"]
            async with open_stream(b, session_id) as stream:
                headers = stream.response.headers
                assert headers["content-type"].startswith("text/event-stream")
                assert headers["cache-control"] == "no-cache, no-transform"

                answer = {"item_id": "sum-east", "answer": '=SUMIF(A2:A4,"East",B2:B4)', "idempotency_key": "k-1"}
                submitted = await a.post(f"/api/v1/sessions/{session_id}/answers", json=answer)
                assert submitted.status_code == 200
                scored = await stream.until("answer_scored")
                assert scored == {"item_id": "sum-east", "idempotency_key": "k-1", **submitted.json()}
                ready = await stream.until("question_ready")
                assert ready == submitted.json()["next_question"]

                finished = await a.post(f"/api/v1/sessions/{session_id}/finish")
                assert finished.status_code == 200
                done = await stream.until("interview_finished")
                assert done == {"status": "SESSION_STATUS_FINISHED", "overall_score": finished.json()["overall_score"], "cancelled": False}
                with pytest.raises(EOFError):
                    await stream.next()


async def test_an_answer_scored_by_the_orchestrator_reads_like_the_gateways_own(
    orchestrator: FakeServer, redis_url: str
) -> None:
    """The orchestrator announces answers its background retry scored through
    common.session_events. The page completes the answer it waits on with that event,
    so it must be the body the gateway's own answer_scored carries, review flags left out."""
    settings = GatewaySettings(orchestrator_address=orchestrator.address, redis_url=redis_url)
    redis = aioredis.Redis.from_url(redis_url)
    try:
        async with serve(settings) as url, httpx.AsyncClient(base_url=url, timeout=10) as http:
            session_id = (await start_as_candidate(http, orchestrator))["session"]["session_id"]
            async with open_stream(http, session_id) as stream:
                answer = {"item_id": "sum-east", "answer": "=1", "idempotency_key": "k-late"}
                assert (await http.post(f"/api/v1/sessions/{session_id}/answers", json=answer)).status_code == 200
                own = await stream.until("answer_scored")
                await stream.until("question_ready")

                response = orchestrator.servicer.by_key["k-late"]
                response.score.needs_review = True
                response.score.review_reason = "the LLM judge disagreed with the model"
                data = session_events.answer_scored_data(response, "sum-east", "k-late")
                message = session_events.encode(session_events.ANSWER_SCORED, data)
                assert await redis.publish(session_events.channel(session_id), message) == 1
                published = await stream.until("answer_scored")
                # The stream announces the next question of a result, whoever published it.
                assert await stream.until("question_ready") == published["next_question"]
    finally:
        await redis.aclose()
    assert published == own
    assert published["score"]["feedback"] == "Not quite." and published["next_question"]["item_id"] == "lookup-choice"
    assert "review" not in json.dumps(published)


async def test_keep_alive_and_a_disconnect_releases_the_subscription(orchestrator: FakeServer, redis_url: str) -> None:
    settings = GatewaySettings(orchestrator_address=orchestrator.address, redis_url=redis_url, event_keepalive_s=0.2)
    redis = aioredis.Redis.from_url(redis_url)
    try:
        async with serve(settings) as url, httpx.AsyncClient(base_url=url, timeout=10) as http:
            session_id = (await start_as_candidate(http, orchestrator))["session"]["session_id"]
            channel = CHANNEL_PREFIX + session_id
            async with open_stream(http, session_id) as stream:
                assert await stream.next(timeout=2) == ("", "keep-alive")
                assert dict(await redis.pubsub_numsub(channel))[channel.encode()] == 1
            # The client went away: the server notices and unsubscribes.
            for _ in range(100):
                if dict(await redis.pubsub_numsub(channel))[channel.encode()] == 0:
                    break
                await asyncio.sleep(0.05)
            assert dict(await redis.pubsub_numsub(channel))[channel.encode()] == 0
    finally:
        await redis.aclose()


async def test_time_warnings_then_time_up_end_the_stream_without_redis(orchestrator: FakeServer) -> None:
    orchestrator.servicer.time_limit_s = 2.5
    # 5 s is already past when the stream opens, so only 1 s is warned about.
    settings = GatewaySettings(orchestrator_address=orchestrator.address, time_warnings_s=[5, 1])
    async with serve(settings) as url, httpx.AsyncClient(base_url=url, timeout=10) as http:
        session_id = (await start_as_candidate(http, orchestrator))["session"]["session_id"]
        async with open_stream(http, session_id) as stream:
            warning = await stream.until("time_warning", timeout=4)
            assert warning["threshold_s"] == 1 and 0 <= warning["seconds_left"] <= 1
            deadline = orchestrator.servicer.sessions[session_id].deadline.ToDatetime()
            assert warning["deadline"].startswith(deadline.isoformat()[:19])
            assert (await stream.until("time_up", timeout=3))["deadline"] == warning["deadline"]
            with pytest.raises(EOFError):
                await stream.next()
        # Past the deadline there is nothing to stream: the browser is told to stop.
        again = await http.get(f"/api/v1/sessions/{session_id}/events")
        assert again.status_code == 409 and again.json()["detail"] == "the interview is over; it has no more events"


async def test_event_streams_are_the_candidates_own(client: httpx.AsyncClient, orchestrator: FakeServer) -> None:
    mine = (await start_as_candidate(client, orchestrator))["session"]["session_id"]
    other = (await start_as_candidate(client, orchestrator, "Someone Else"))["session"]["session_id"]
    assert (await client.get(f"/api/v1/sessions/{mine}/events")).status_code == 404
    staff = await sign_in(client, "admin@example.com")
    assert (await client.get(f"/api/v1/sessions/{other}/events", headers=staff)).status_code == 403
    client.headers.pop("authorization")
    assert (await client.get(f"/api/v1/sessions/{other}/events")).status_code == 401


async def test_finished_sessions_have_no_stream(client: httpx.AsyncClient, orchestrator: FakeServer) -> None:
    session_id = (await start_as_candidate(client, orchestrator))["session"]["session_id"]
    await client.post(f"/api/v1/sessions/{session_id}/finish")
    refused = await client.get(f"/api/v1/sessions/{session_id}/events")
    assert refused.status_code == 409
    assert refused.headers["content-type"] == "application/problem+json"


async def test_answers_are_scored_while_redis_is_down(orchestrator: FakeServer, make_client) -> None:  # type: ignore[no-untyped-def]
    async with make_client(orchestrator.address, redis_url="redis://127.0.0.1:1/0") as client:
        started = await start_as_candidate(client, orchestrator)
        response = await client.post(
            f"/api/v1/sessions/{started['session']['session_id']}/answers",
            json={"item_id": "sum-east", "answer": "=1", "idempotency_key": "k"},
        )
        assert response.status_code == 200 and response.json()["score"] is not None


async def pubsub_clients(redis: aioredis.Redis) -> int:
    return sum("P" in client["flags"] for client in await redis.client_list())


async def test_all_streams_of_a_process_share_one_redis_subscriber(redis_url: str) -> None:
    bus = RedisEventBus(redis_url)
    redis = aioredis.Redis.from_url(redis_url)
    sessions = [f"shared-{i}" for i in range(5)]
    try:
        async with contextlib.AsyncExitStack() as stack:
            streams = {s: [await stack.enter_async_context(bus.subscribe(s)) for _ in range(4)] for s in sessions}
            # Twenty open streams, one Redis connection in subscriber mode.
            assert await pubsub_clients(redis) == 1
            for i, session_id in enumerate(sessions):
                await bus.publish(session_id, "question_ready", {"n": i})
            for i, session_id in enumerate(sessions):
                for stream in streams[session_id]:
                    assert await stream.next(5) == ("question_ready", {"n": i})
                    assert await stream.next(0.05) is None  # nothing of the other sessions
        channels = [session_events.channel(s) for s in sessions]
        assert all(count == 0 for _, count in await redis.pubsub_numsub(*channels))
    finally:
        await bus.close()
        await redis.aclose()


async def test_a_lost_subscriber_connection_ends_the_streams_and_the_next_one_reconnects(redis_url: str) -> None:
    bus = RedisEventBus(redis_url)
    redis = aioredis.Redis.from_url(redis_url)
    try:
        async with bus.subscribe("lost-1") as first:
            assert await redis.client_kill_filter(_type="pubsub") == 1
            # The stream ends with a Redis error (its browser reconnects after retry_ms).
            with pytest.raises(RedisError):
                await first.next(5)
        async with bus.subscribe("lost-2") as second:
            await bus.publish("lost-2", "answer_scored", {"ok": True})
            assert await second.next(5) == ("answer_scored", {"ok": True})
    finally:
        await bus.close()
        await redis.aclose()
