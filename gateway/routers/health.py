"""Liveness and readiness probes: ``/healthz`` and ``/readyz``."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter
from pydantic import BaseModel

from gateway.deps import ConnectionDep, RequestIdDep, SettingsDep
from gateway.problems import ProblemError, problem_responses

router = APIRouter(tags=["health"])


class HealthStatus(BaseModel):
    """A probe's verdict."""

    status: Literal["ok"]
    detail: str = ""


@router.get("/healthz", response_model=HealthStatus, summary="Liveness")
async def healthz() -> HealthStatus:
    """Answers as long as the process serves HTTP; checks nothing downstream.

    A liveness probe must not fail because a dependency is down, or the
    orchestrator being down would get healthy gateways restarted.
    """
    return HealthStatus(status="ok")


@router.get("/readyz", response_model=HealthStatus, responses=problem_responses(503), summary="Readiness")
async def readyz(connection: ConnectionDep, settings: SettingsDep, request_id: RequestIdDep) -> HealthStatus:
    """Ready when the orchestrator's gRPC health service reports it SERVING."""
    serving, reason = await connection.check_serving(request_id, timeout=settings.readiness_deadline_s)
    if not serving:
        raise ProblemError(503, "not-ready", "Not ready", f"The gateway cannot serve interviews: {reason}.")
    return HealthStatus(status="ok", detail=reason)
