"""The reference pair of the gateway benchmark: a bare FastAPI endpoint forwarding to a grpc.aio echo.

It is the floor a REST -> gRPC hop costs on this machine with the gateway's own web stack
(FastAPI under uvicorn with the gateway's server options), so the gateway's figures can be
read as a ratio to it. The echo is the standard gRPC health check, answered in-process.

With ``--redis`` the pair also makes the Redis round trips every question read needs and
nothing else: the endpoint counts the request with the gateway's own rate limiter (one
script call for the per-IP and per-session counters, as ``gateway.deps.limit_ip`` makes
it), and the echo reads a session's hot state with the orchestrator's Redis client (one
``HGET``, as ``orchestrator.state.SessionStateStore.get`` makes it). That pair bounds what a
question read can reach beside the plain reference, whatever else the gateway and the
orchestrator are made to cost.

    python benchmarks/gateway/reference.py echo --port 50070 [--redis redis://...]
    python benchmarks/gateway/reference.py http --port 8070 --echo 127.0.0.1:50070 [--redis redis://...]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

import grpc
import uvicorn
from fastapi import FastAPI
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from gateway.__main__ import server_options  # noqa: E402
from gateway.ratelimit import Check, RedisLimiter  # noqa: E402
from gateway.settings import GatewaySettings  # noqa: E402
from orchestrator.state import create_redis_client  # noqa: E402

# A session's cached state, as large as the orchestrator's entries for a bank interview.
STATE_KEY = "xli:bench:reference:state"
STATE_BYTES = 600
# Counters never reach these, so every request is let through, as in the benchmark's gateway.
UNLIMITED = 10**9


class _StateReadingHealth(health.aio.HealthServicer):
    """The echo, reading a session's hot state from Redis before answering."""

    def __init__(self, redis_url: str) -> None:
        super().__init__()
        self._redis_url = redis_url
        self._redis = None

    async def Check(self, request, context):  # type: ignore[no-untyped-def]  # noqa: N802 (gRPC's name)
        if self._redis is None:
            self._redis = create_redis_client(self._redis_url, timeout_s=1.0)
            await self._redis.hset(STATE_KEY, mapping={"rank": "1", "state": "x" * STATE_BYTES})
        await self._redis.hget(STATE_KEY, "state")
        return await super().Check(request, context)


async def serve_echo(port: int, redis_url: str = "") -> None:
    """Serves gRPC health checks (the echo) on 127.0.0.1:``port`` until killed."""
    server = grpc.aio.server()
    servicer = _StateReadingHealth(redis_url) if redis_url else health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    await server.wait_for_termination()


def forwarding_app(echo_address: str, redis_url: str = "") -> FastAPI:
    """``GET /ref`` calls the echo once over one shared channel and returns its status as JSON
    (counting the request with the gateway's rate limiter first, with ``redis_url``)."""
    app = FastAPI()
    state: dict[str, object] = {}

    @app.get("/ref")
    async def ref() -> dict[str, int]:
        if "stub" not in state:
            # Created on the server's event loop, as the gateway creates its channel.
            state["stub"] = health_pb2_grpc.HealthStub(grpc.aio.insecure_channel(echo_address))
            state["limiter"] = RedisLimiter(redis_url) if redis_url else None
        limiter = state["limiter"]
        if isinstance(limiter, RedisLimiter):
            await limiter.hit([Check("ip", "127.0.0.1", UNLIMITED), Check("candidate", "reference", UNLIMITED)])
        stub = state["stub"]
        assert isinstance(stub, health_pb2_grpc.HealthStub)
        reply = await stub.Check(health_pb2.HealthCheckRequest(), timeout=5)
        return {"status": reply.status}

    return app


def main() -> None:
    """Runs the echo or the forwarding endpoint (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("role", choices=["echo", "http"])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--echo", default="", help="host:port of the echo (role http)")
    parser.add_argument("--redis", default="", help="Redis URL: make a question read's Redis round trips too")
    args = parser.parse_args()
    if args.role == "echo":
        asyncio.run(serve_echo(args.port, args.redis))
        return
    options = {**server_options(GatewaySettings()), "port": args.port}
    uvicorn.run(forwarding_app(args.echo, args.redis), **options)


if __name__ == "__main__":
    main()
