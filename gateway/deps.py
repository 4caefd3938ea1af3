"""Typed FastAPI dependencies shared by the routers.

Routers declare what they need with these ``Annotated`` aliases, e.g.
``async def get(orchestrator: OrchestratorDep)``, so later concerns (the
authenticated principal, rate-limit buckets) slot in as more aliases here.

Every dependency here is ``async def`` although none of them awaits: FastAPI runs a
plain ``def`` dependency in a worker thread, and those hand-offs (several per request)
were 11–18% of the gateway's CPU under load (benchmarks/README.md, load section).
A dependency that does blocking work must stay ``def`` instead.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Coroutine
from typing import Annotated, Any

from fastapi import Depends, Header, Path, Request

from gateway.auth import STAFF_ROLES, Principal, Role, TokenService, unauthenticated
from gateway.events import EventBus
from gateway.orchestrator import AdminClient, OrchestratorClient, OrchestratorConnection
from gateway.problems import ProblemError
from gateway.ratelimit import Limiter, enforce
from gateway.settings import GatewaySettings
from xlinterview.v1 import admin_pb2, orchestrator_pb2_grpc


async def get_settings(request: Request) -> GatewaySettings:
    """The settings the app was created with."""
    settings: GatewaySettings = request.app.state.settings
    return settings


async def get_request_id(request: Request) -> str:
    """The id :class:`gateway.middleware.RequestIdMiddleware` gave this request."""
    request_id = getattr(request.state, "request_id", None)
    # Only missing if the app runs without its middleware; an id is still needed
    # for the gRPC metadata.
    return request_id or uuid.uuid4().hex


async def get_connection(request: Request) -> OrchestratorConnection:
    """The channel the lifespan opened."""
    connection: OrchestratorConnection = request.app.state.orchestrator
    return connection


SettingsDep = Annotated[GatewaySettings, Depends(get_settings)]
RequestIdDep = Annotated[str, Depends(get_request_id)]
ConnectionDep = Annotated[OrchestratorConnection, Depends(get_connection)]


async def get_orchestrator_stub(connection: ConnectionDep) -> orchestrator_pb2_grpc.OrchestratorStub:
    """The raw generated stub, for callers that set deadline and metadata themselves."""
    return connection.stub


async def get_orchestrator(
    connection: ConnectionDep, settings: SettingsDep, request_id: RequestIdDep
) -> OrchestratorClient:
    """A client that puts the deadline and request id on every orchestrator call."""
    return OrchestratorClient(connection, timeout=settings.grpc_deadline_s, request_id=request_id)


OrchestratorStubDep = Annotated[orchestrator_pb2_grpc.OrchestratorStub, Depends(get_orchestrator_stub)]
OrchestratorDep = Annotated[OrchestratorClient, Depends(get_orchestrator)]


async def get_admin(connection: ConnectionDep, settings: SettingsDep, request_id: RequestIdDep) -> AdminClient:
    """A client of the Identity and Interviews services, with deadline and request id."""
    return AdminClient(connection, timeout=settings.grpc_deadline_s, request_id=request_id)


AdminClientDep = Annotated[AdminClient, Depends(get_admin)]


async def get_tokens(request: Request) -> TokenService:
    """The JWT issuer/verifier built at start-up."""
    tokens: TokenService = request.app.state.tokens
    return tokens


async def get_limiter(request: Request) -> Limiter:
    """The rate limiter the lifespan opened."""
    limiter: Limiter = request.app.state.limiter
    return limiter


async def get_events(request: Request) -> EventBus:
    """The session event bus the lifespan opened."""
    events: EventBus = request.app.state.events
    return events


TokensDep = Annotated[TokenService, Depends(get_tokens)]
LimiterDep = Annotated[Limiter, Depends(get_limiter)]
EventsDep = Annotated[EventBus, Depends(get_events)]


def client_ip(request: Request) -> str:
    """The client's address: the peer's, or behind a proxy listed in
    ``trusted_proxies`` the one it forwarded (see :class:`gateway.middleware.ClientAddressMiddleware`)."""
    return request.client.host if request.client else "unknown"


async def limit_ip(request: Request, limiter: LimiterDep, settings: SettingsDep) -> None:
    """Per-IP limit on every API request, checked before authentication so token
    guessing is throttled too."""
    await enforce(limiter, "ip", client_ip(request), settings.rate_limit_ip_per_min)


async def limit_sign_in(request: Request, limiter: LimiterDep, settings: SettingsDep) -> None:
    """The much lower per-IP limit of password and invite attempts (brute force)."""
    await enforce(limiter, "sign-in", client_ip(request), settings.rate_limit_login_per_min)


_ROLES = {
    admin_pb2.ROLE_ADMIN: Role.ADMIN,
    admin_pb2.ROLE_INTERVIEWER: Role.INTERVIEWER,
    admin_pb2.ROLE_ANALYST: Role.ANALYST,
}


def staff_role(role: int) -> Role:
    """The gateway role of a proto ``Role``.

    Raises:
        ProblemError: 401 for a role this gateway does not know.
    """
    try:
        return _ROLES[role]  # type: ignore[index]
    except KeyError:
        raise unauthenticated("The account has no role this gateway knows.") from None


async def get_principal(
    tokens: TokensDep,
    admin: AdminClientDep,
    limiter: LimiterDep,
    settings: SettingsDep,
    authorization: Annotated[str | None, Header(include_in_schema=False)] = None,
    x_api_key: Annotated[str | None, Header(include_in_schema=False)] = None,
) -> Principal:
    """The caller, from ``Authorization: Bearer <jwt>`` or ``X-API-Key``.

    Also applies the per-API-key and per-candidate-session limits, which need to
    know who is calling.

    Raises:
        ProblemError: 401 without valid credentials, 429 over a limit.
    """
    if x_api_key:
        key = await admin.identity("VerifyApiKey", admin_pb2.VerifyApiKeyRequest(secret=x_api_key))
        await enforce(limiter, "api-key", key.key_id, settings.rate_limit_api_key_per_min)
        return Principal(role=staff_role(key.role), user_id=key.owner_user_id, via="api_key", key_id=key.key_id)
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise unauthenticated("Sign in, or send an API key, to use this endpoint.")
    principal = tokens.principal(token.strip())
    if principal.role == Role.CANDIDATE:
        await enforce(limiter, "candidate", principal.session_id, settings.rate_limit_candidate_per_min)
    return principal


def require(*roles: Role) -> Callable[..., Coroutine[Any, Any, Principal]]:
    """A dependency that admits only callers with one of ``roles`` (403 otherwise)."""
    allowed = frozenset(roles)

    async def check(principal: Annotated[Principal, Depends(get_principal)]) -> Principal:
        if principal.role not in allowed:
            raise ProblemError(403, "forbidden", "Forbidden", f"The {principal.role.value} role may not do this.")
        return principal

    return check


StaffDep = Annotated[Principal, Depends(require(*STAFF_ROLES))]
"""Any staff role: reads."""
WriterDep = Annotated[Principal, Depends(require(Role.ADMIN, Role.INTERVIEWER))]
"""Staff who may create and change interviews."""
AdminDep = Annotated[Principal, Depends(require(Role.ADMIN))]
"""Admins only: users and API keys."""
CandidateDep = Annotated[Principal, Depends(require(Role.CANDIDATE))]
"""A candidate holding an invite-issued token."""


InterviewId = Annotated[
    str, Path(min_length=1, max_length=64, description="The interview id returned when the interview was created.")
]


async def get_owned_interview(interview_id: InterviewId, principal: StaffDep, admin: AdminClientDep) -> admin_pb2.Interview:
    """The interview in the path, if the caller may see it.

    Raises:
        ProblemError: 404 when it does not exist or belongs to another interviewer:
            the two look the same, so ids cannot be probed.
    """
    interview = await admin.get_interview(interview_id)
    if not principal.owns(interview.owner_user_id):
        raise ProblemError(404, "not-found", "Not found", f"no interview {interview_id}")
    return interview


OwnedInterviewDep = Annotated[admin_pb2.Interview, Depends(get_owned_interview)]
"""The path's interview, visible to the caller (admins and analysts see all)."""
