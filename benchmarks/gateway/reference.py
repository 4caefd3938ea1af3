"""The reference pair of the gateway benchmark: a bare FastAPI endpoint forwarding to a grpc.aio echo.

It is the floor a REST -> gRPC hop costs on this machine with the gateway's own web stack
(FastAPI under uvicorn with the gateway's server options), so the gateway's figures can be
read as a ratio to it. The echo is the standard gRPC health check, answered in-process.

    python benchmarks/gateway/reference.py echo --port 50070
    python benchmarks/gateway/reference.py http --port 8070 --echo 127.0.0.1:50070
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
from gateway.settings import GatewaySettings  # noqa: E402


async def serve_echo(port: int) -> None:
    """Serves gRPC health checks (the echo) on 127.0.0.1:``port`` until killed."""
    server = grpc.aio.server()
    health_pb2_grpc.add_HealthServicer_to_server(health.aio.HealthServicer(), server)
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    await server.wait_for_termination()


def forwarding_app(echo_address: str) -> FastAPI:
    """``GET /ref`` calls the echo once over one shared channel and returns its status as JSON."""
    app = FastAPI()
    state: dict[str, health_pb2_grpc.HealthStub] = {}

    @app.get("/ref")
    async def ref() -> dict[str, int]:
        if "stub" not in state:
            # Created on the server's event loop, as the gateway creates its channel.
            state["stub"] = health_pb2_grpc.HealthStub(grpc.aio.insecure_channel(echo_address))
        reply = await state["stub"].Check(health_pb2.HealthCheckRequest(), timeout=5)
        return {"status": reply.status}

    return app


def main() -> None:
    """Runs the echo or the forwarding endpoint (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("role", choices=["echo", "http"])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--echo", default="", help="host:port of the echo (role http)")
    args = parser.parse_args()
    if args.role == "echo":
        asyncio.run(serve_echo(args.port))
        return
    options = {**server_options(GatewaySettings()), "port": args.port}
    uvicorn.run(forwarding_app(args.echo), **options)


if __name__ == "__main__":
    main()
