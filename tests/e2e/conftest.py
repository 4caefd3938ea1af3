"""One real stack (embedded PostgreSQL, Redis, Triton and the three services) for the e2e tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from stack.backing import free_port
from stack.runner import Stack
from stack.settings import StackSettings


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    settings = StackSettings(
        data_dir=Path(tmp_path_factory.mktemp("data")),
        gateway_port=free_port(),
        scorer_port=free_port(),
        orchestrator_port=free_port(),
        database_url=None,
        redis_url=None,
        triton_url=None,
    )
    with Stack(settings) as running:
        yield running


@pytest.fixture(scope="session")
def client(stack: Stack) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=stack.gateway_url, timeout=30) as http:
        yield http


@pytest.fixture(scope="session")
def admin_headers(client: httpx.Client) -> dict[str, str]:
    """The development admin (``make up`` prints these credentials), signed in."""
    from orchestrator.identity import DEV_ADMIN_EMAIL, DEV_ADMIN_PASSWORD

    response = client.post("/api/v1/auth/login", json={"email": DEV_ADMIN_EMAIL, "password": DEV_ADMIN_PASSWORD})
    assert response.status_code == 200, response.text
    return {"authorization": f"Bearer {response.json()['access_token']}"}

