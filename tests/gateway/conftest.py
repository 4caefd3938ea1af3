"""Fixtures for the gateway tests: the fake orchestrator on a free port, and the app."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.async_api import Browser, async_playwright
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from common.grpc_server import create_server
from gateway.app import create_app
from gateway.orchestrator import ORCHESTRATOR_SERVICE
from gateway.settings import GatewaySettings
from gateway_fakes import FakeOrchestrator, FakeServer
from xlinterview.v1 import admin_pb2_grpc, orchestrator_pb2_grpc


CHROMIUM = Path("/usr/lib/chromium/chromium")  # Debian's binary; /usr/bin/chromium is a wrapper script


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Browser]:
    if not CHROMIUM.is_file():
        pytest.skip("Debian's chromium is not installed (`make test` installs it)")
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox", "--disable-background-networking"]
        )
        yield launched
        await launched.close()


@pytest.fixture(scope="session")
async def fake_server() -> AsyncIterator[FakeServer]:
    servicer = FakeOrchestrator()
    server = create_server()
    orchestrator_pb2_grpc.add_OrchestratorServicer_to_server(servicer, server)
    admin_pb2_grpc.add_IdentityServicer_to_server(servicer, server)
    admin_pb2_grpc.add_InterviewsServicer_to_server(servicer, server)
    admin_pb2_grpc.add_ReviewsServicer_to_server(servicer, server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    await health_servicer.set(ORCHESTRATOR_SERVICE, health_pb2.HealthCheckResponse.SERVING)
    yield FakeServer(servicer, f"127.0.0.1:{port}", health_servicer)
    await server.stop(grace=None)


@pytest.fixture
async def orchestrator(fake_server: FakeServer) -> AsyncIterator[FakeServer]:
    """The shared fake, reset to a clean, serving state for each test."""
    fake_server.servicer.reset()
    await fake_server.health.set(ORCHESTRATOR_SERVICE, health_pb2.HealthCheckResponse.SERVING)
    yield fake_server
    fake_server.servicer.reset()


ClientFactory = Callable[..., AbstractAsyncContextManager[httpx.AsyncClient]]


@pytest.fixture
def make_client() -> ClientFactory:
    """Builds the real app for an orchestrator address and runs its lifespan."""

    @asynccontextmanager
    async def factory(address: str, raise_app_exceptions: bool = True, **overrides: Any) -> AsyncIterator[httpx.AsyncClient]:
        settings = GatewaySettings(orchestrator_address=address, **overrides)
        app = create_app(settings)
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app, raise_app_exceptions=raise_app_exceptions)
            async with httpx.AsyncClient(transport=transport, base_url="http://gateway.test") as client:
                client.app = app  # type: ignore[attr-defined]
                yield client

    return factory


@pytest.fixture
async def client(orchestrator: FakeServer, make_client: ClientFactory) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the app wired to the fake orchestrator, without credentials."""
    async with make_client(orchestrator.address) as c:
        yield c

