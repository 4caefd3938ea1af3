"""Typed FastAPI dependencies shared by the routers.

Routers declare what they need with these ``Annotated`` aliases, e.g.
``async def get(orchestrator: OrchestratorDep)``, so later concerns (the
authenticated principal, rate-limit buckets) slot in as more aliases here.
"""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import Depends, Request

from gateway.orchestrator import OrchestratorClient, OrchestratorConnection
from gateway.settings import GatewaySettings
from xlinterview.v1 import orchestrator_pb2_grpc


def get_settings(request: Request) -> GatewaySettings:
    """The settings the app was created with."""
    settings: GatewaySettings = request.app.state.settings
    return settings


def get_request_id(request: Request) -> str:
    """The id :class:`gateway.middleware.RequestIdMiddleware` gave this request."""
    request_id = getattr(request.state, "request_id", None)
    # Only missing if the app runs without its middleware; an id is still needed
    # for the gRPC metadata.
    return request_id or uuid.uuid4().hex


def get_connection(request: Request) -> OrchestratorConnection:
    """The channel the lifespan opened."""
    connection: OrchestratorConnection = request.app.state.orchestrator
    return connection


SettingsDep = Annotated[GatewaySettings, Depends(get_settings)]
RequestIdDep = Annotated[str, Depends(get_request_id)]
ConnectionDep = Annotated[OrchestratorConnection, Depends(get_connection)]


def get_orchestrator_stub(connection: ConnectionDep) -> orchestrator_pb2_grpc.OrchestratorStub:
    """The raw generated stub, for callers that set deadline and metadata themselves."""
    return connection.stub


def get_orchestrator(connection: ConnectionDep, settings: SettingsDep, request_id: RequestIdDep) -> OrchestratorClient:
    """A client that puts the deadline and request id on every orchestrator call."""
    return OrchestratorClient(connection, timeout=settings.grpc_deadline_s, request_id=request_id)


OrchestratorStubDep = Annotated[orchestrator_pb2_grpc.OrchestratorStub, Depends(get_orchestrator_stub)]
OrchestratorDep = Annotated[OrchestratorClient, Depends(get_orchestrator)]
