"""Starts the real Scorer service in-process for the scorer tests.

A uniquely named module rather than conftest, so other test folders' conftest files
cannot shadow it.
"""

from __future__ import annotations

from typing import Any

import grpc

from common.grpc_server import add_health_and_reflection, create_server
from scorer.__main__ import build_service
from scorer.service import ScorerService
from scorer.settings import ScorerSettings
from stack.backing import free_port
from xlinterview.v1 import scorer_pb2_grpc


async def start_scorer(triton_url: str, **overrides: Any) -> tuple[grpc.aio.Server, str, ScorerService]:
    """Serves a Scorer wired as ``xli-scorer`` wires it, on a free port.

    Args:
        triton_url: Triton gRPC ``host:port``.
        **overrides: :class:`ScorerSettings` fields, e.g. ``redis_url`` or ``breaker_reset_s``.

    Returns:
        The server, its address, and the service (close it after stopping the server).
    """
    fields: dict[str, Any] = {"triton_url": triton_url, "max_answer_chars": 1000, "redis_url": None, **overrides}
    settings = ScorerSettings.model_validate(fields)
    service = build_service(settings)
    server = create_server(settings.max_message_bytes)
    scorer_pb2_grpc.add_ScorerServicer_to_server(service, server)
    add_health_and_reflection(server, ["xlinterview.v1.Scorer"])
    address = f"127.0.0.1:{free_port()}"
    server.add_insecure_port(address)
    await server.start()
    return server, address, service
