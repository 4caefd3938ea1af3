"""Real PostgreSQL and Redis for the orchestrator tests, a controllable fake Scorer,
and the real orchestrator served on a free port."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator

import asyncpg
import pytest
import pytest_asyncio
import redis.asyncio as aioredis

from orchestrator.settings import OrchestratorSettings
from stack.backing import EmbeddedPostgres, EmbeddedRedis
from orch_helpers import FakeScorer, orchestrator_settings, running_orchestrator, start_fake_scorer


@pytest.fixture(scope="session")
def postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedPostgres]:
    with EmbeddedPostgres(tmp_path_factory.mktemp("orch-pg")) as pg:
        yield pg


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedRedis]:
    with EmbeddedRedis(tmp_path_factory.mktemp("orch-redis")) as server:
        yield server


@pytest_asyncio.fixture(scope="session")
async def fake_scorer() -> AsyncIterator[tuple[FakeScorer, int]]:
    fake = FakeScorer()
    server, port = await start_fake_scorer(fake)
    yield fake, port
    await server.stop(grace=None)


@pytest.fixture
def make_settings(postgres: EmbeddedPostgres, redis_server: EmbeddedRedis, fake_scorer):  # type: ignore[no-untyped-def]
    def build(**overrides: object) -> OrchestratorSettings:
        return orchestrator_settings(postgres.url, redis_server.url, fake_scorer[1], **overrides)

    return build


@pytest_asyncio.fixture(scope="session")
async def orchestrator(postgres: EmbeddedPostgres, redis_server: EmbeddedRedis, fake_scorer):  # type: ignore[no-untyped-def]
    settings = orchestrator_settings(postgres.url, redis_server.url, fake_scorer[1])
    async with running_orchestrator(settings) as (app, stub):
        yield app, stub


@pytest.fixture
def stub(orchestrator):  # type: ignore[no-untyped-def]
    return orchestrator[1]


@pytest.fixture
def scorer(fake_scorer) -> FakeScorer:  # type: ignore[no-untyped-def]
    fake = fake_scorer[0]
    fake.reset()
    yield fake
    fake.reset()


@pytest_asyncio.fixture
async def pg(postgres: EmbeddedPostgres) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(postgres.url)
    yield conn
    await conn.close()


@pytest_asyncio.fixture
async def redis_client(redis_server: EmbeddedRedis) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_server.url)
    yield client
    await client.aclose()


@pytest_asyncio.fixture
async def fresh_database(postgres: EmbeddedPostgres, pg: asyncpg.Connection) -> AsyncIterator[str]:
    """The URL of a new, empty database on the test server (dropped afterwards)."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    await pg.execute(f'CREATE DATABASE "{name}"')
    yield postgres.url.rsplit("/", 1)[0] + "/" + name
    await pg.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
