"""Several gateway worker processes (``XLI_GATEWAY_WORKERS``) sharing one port and Redis."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest
from pydantic import ValidationError

from gateway.settings import GatewaySettings
from gateway_fakes import STAFF, FakeServer
from stack.backing import EmbeddedRedis, free_port

LOGIN_LIMIT = 4


def test_several_workers_need_redis() -> None:
    with pytest.raises(ValidationError, match="REDIS_URL"):
        GatewaySettings(workers=2)
    assert GatewaySettings(workers=2, redis_url="redis://127.0.0.1:1/0").workers == 2


@pytest.fixture
def redis_url(tmp_path: Path) -> Iterator[str]:
    with EmbeddedRedis(tmp_path / "redis") as server:
        yield server.url


async def test_two_workers_serve_one_port_and_share_the_rate_limits(
    orchestrator: FakeServer, redis_url: str, tmp_path: Path
) -> None:
    port = free_port()
    env = {
        **os.environ,
        "XLI_GATEWAY_WORKERS": "2",
        "XLI_GATEWAY_PORT": str(port),
        "XLI_ORCHESTRATOR_ADDRESS": orchestrator.address,
        "REDIS_URL": redis_url,
        "XLI_RATE_LIMIT_LOGIN_PER_MIN": str(LOGIN_LIMIT),
    }
    log = (tmp_path / "gateway.log").open("wb")
    gateway = subprocess.Popen([sys.executable, "-m", "gateway"], env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(base_url=base, timeout=5) as client:
            for _ in range(300):
                try:
                    if (await client.get("/healthz")).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert gateway.poll() is None, (tmp_path / "gateway.log").read_text()
                await asyncio.sleep(0.1)
            workers = [p for p in psutil.Process(gateway.pid).children() if "spawn_main" in " ".join(p.cmdline())]
            assert len(workers) == 2

        # A fresh connection per attempt, so the kernel hands them to either worker: the
        # limit still holds across both, because the count lives in Redis.
        email = next(iter(STAFF))
        statuses = []
        for _ in range(2 * LOGIN_LIMIT):
            async with httpx.AsyncClient(base_url=base, timeout=5) as client:
                reply = await client.post("/api/v1/auth/login", json={"email": email, "password": STAFF[email][2]})
                statuses.append(reply.status_code)
        assert statuses == [200] * LOGIN_LIMIT + [429] * LOGIN_LIMIT
        assert all(w.is_running() for w in workers)
    finally:
        gateway.terminate()
        try:
            gateway.wait(timeout=15)
        except subprocess.TimeoutExpired:
            gateway.kill()
            gateway.wait()
        log.close()
