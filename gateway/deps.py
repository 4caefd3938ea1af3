"""Typed FastAPI dependencies shared by the routers.

Routers declare what they need with these ``Annotated`` aliases, e.g.
``async def get(orchestrator: OrchestratorDep)``, so later concerns (the
authenticated principal, rate-limit buckets) slot in as more aliases here.

Every dependency here is ``async def`` although none of them awaits: FastAPI runs a
plain ``def`` dependency in a worker thread, and those hand-offs (several per request)
were 11–18% of the gateway's CPU under load (benchmarks/README.md, load section).
A dependency that does blocking work must stay ``def`` instead.

The dependencies every API request resolves (:func:`limit_ip`, :func:`get_principal`,
:func:`get_orchestrator`) read the app's state themselves instead of through the small
accessor dependencies below, which remain for the routers, and read the
``Authorization`` and ``X-API-Key`` headers from the request rather than as ``Header``
parameters: FastAPI resolves each dependency and each parameter with a pass of
``solve_dependencies``, and dropping those cut the gateway's CPU per question read by
about 6% (benchmarks/gateway, A/B).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Coroutine
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Path, Request

from gateway.auth import STAFF_ROLES, Principal, Role, TokenService, unauthenticated
from gateway.events import EventBus
from gateway.orchestrator import AdminClient, OrchestratorClient, OrchestratorConnection
from gateway.problems import ProblemError
from gateway.ratelimit import Check, Limiter, enforce
from gateway.settings import GatewaySettings
from xlinterview.v1 import admin_pb2, orchestrator_pb2_grpc


async def get_settings(request: Request) -> GatewaySettings:
    """The settings the app was created with."""
    settings: GatewaySettings = request.app.state.settings
    return settings


def _request_id(request: Request) -> str:
    request_id: str | None = getattr(request.state, "request_id", None)
    if not request_id:
        # Only missing if the app runs without its middleware; an id is still needed
        # for the gRPC metadata, the same one for every call of the request.
        request_id = request.state.request_id = uuid.uuid4().hex
    return request_id


async def get_request_id(request: Request) -> str:
    """The id :class:`gateway.middleware.RequestIdMiddleware` gave this request."""
    return _request_id(request)


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


_Client = TypeVar("_Client", OrchestratorClient, AdminClient)


def _client(kind: type[_Client], request: Request) -> _Client:
    state = request.app.state
    return kind(state.orchestrator, timeout=state.settings.grpc_deadline_s, request_id=_request_id(request))


def orchestrator_client(request: Request) -> OrchestratorClient:
    """A client that puts the deadline and request id on every orchestrator call."""
    return _client(OrchestratorClient, request)


async def get_orchestrator(request: Request) -> OrchestratorClient:
    """:func:`orchestrator_client` as a dependency."""
    return orchestrator_client(request)


OrchestratorStubDep = Annotated[orchestrator_pb2_grpc.OrchestratorStub, Depends(get_orchestrator_stub)]
OrchestratorDep = Annotated[OrchestratorClient, Depends(get_orchestrator)]


async def get_admin(request: Request) -> AdminClient:
    """A client of the Identity and Interviews services, with deadline and request id."""
    return _client(AdminClient, request)


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


def _bearer_token(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, if that is what it is."""
    scheme, _, token = (authorization or "").partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


async def limit_ip(request: Request) -> None:
    """Per-IP limit on every API request, checked before authentication so token
    guessing is throttled too.

    A valid candidate token's per-session limit is counted here as well, in the same
    Redis round trip, rather than a second one in :func:`get_principal`; the
    principal is kept on ``request.state`` so the token is not verified twice. A bad
    token counts against the IP alone and is refused later, by :func:`get_principal`.
    """
    state = request.app.state
    settings: GatewaySettings = state.settings
    checks = [Check("ip", client_ip(request), settings.rate_limit_ip_per_min)]
    # An API key takes precedence over a bearer token (see get_principal), and its
    # limit needs the Identity service's answer first, so it is counted there.
    headers = request.headers
    token = None if headers.get("x-api-key") else _bearer_token(headers.get("authorization"))
    if token is not None:
        try:
            principal = state.tokens.principal(token)
        except ProblemError:
            pass
        else:
            request.state.bearer = (token, principal)
            if principal.role == Role.CANDIDATE:
                checks.append(Check("candidate", principal.session_id, settings.rate_limit_candidate_per_min))
    await enforce(state.limiter, *checks)
    if len(checks) > 1:
        request.state.candidate_counted = True


async def limit_sign_in(request: Request, limiter: LimiterDep, settings: SettingsDep) -> None:
    """The much lower per-IP limit of password and invite attempts (brute force)."""
    await enforce(limiter, Check("sign-in", client_ip(request), settings.rate_limit_login_per_min))


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


async def get_principal(request: Request) -> Principal:
    """The caller, from ``Authorization: Bearer <jwt>`` or ``X-API-Key``.

    Also applies the per-API-key and per-candidate-session limits, which need to
    know who is calling (unless :func:`limit_ip` already counted the candidate's).
    The answer is kept on ``request.state``, so the role checks of :func:`require`
    can call this directly rather than as a sub-dependency (a pass of FastAPI's
    ``solve_dependencies`` each) and a request still verifies its caller, and counts
    its limits, once.

    Raises:
        ProblemError: 401 without valid credentials, 429 over a limit.
    """
    request_state = request.state
    known: Principal | None = getattr(request_state, "principal", None)
    if known is not None:
        return known
    state = request.app.state
    settings: GatewaySettings = state.settings
    limiter: Limiter = state.limiter
    headers = request.headers
    x_api_key = headers.get("x-api-key")
    if x_api_key:
        key = await _client(AdminClient, request).identity("VerifyApiKey", admin_pb2.VerifyApiKeyRequest(secret=x_api_key))
        await enforce(limiter, Check("api-key", key.key_id, settings.rate_limit_api_key_per_min))
        principal = Principal(role=staff_role(key.role), user_id=key.owner_user_id, via="api_key", key_id=key.key_id)
    else:
        token = _bearer_token(headers.get("authorization"))
        if token is None:
            raise unauthenticated("Sign in, or send an API key, to use this endpoint.")
        verified: tuple[str, Principal] | None = getattr(request_state, "bearer", None)
        principal = verified[1] if verified is not None and verified[0] == token else state.tokens.principal(token)
        if principal.role == Role.CANDIDATE and not getattr(request_state, "candidate_counted", False):
            await enforce(limiter, Check("candidate", principal.session_id, settings.rate_limit_candidate_per_min))
    request_state.principal = principal
    return principal


def check_role(principal: Principal, allowed: frozenset[Role]) -> Principal:
    """``principal``, if its role is one of ``allowed``.

    Raises:
        ProblemError: 403 otherwise.
    """
    if principal.role not in allowed:
        raise ProblemError(403, "forbidden", "Forbidden", f"The {principal.role.value} role may not do this.")
    return principal


def require(*roles: Role) -> Callable[..., Coroutine[Any, Any, Principal]]:
    """A dependency that admits only callers with one of ``roles`` (403 otherwise)."""
    allowed = frozenset(roles)

    async def check(request: Request) -> Principal:
        return check_role(await get_principal(request), allowed)

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
