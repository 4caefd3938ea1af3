"""Staff sign-in: ``/api/v1/auth``."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from gateway.admin_schemas import LoginBody, RefreshBody, TokenPair, User, user_from_proto
from gateway.auth import TokenType, unauthenticated
from gateway.deps import AdminClientDep, StaffDep, TokensDep, limit_sign_in, staff_role
from gateway.problems import ProblemError, problem_responses
from xlinterview.v1 import admin_pb2

router = APIRouter(prefix="/api/v1/auth", tags=["auth"], responses=problem_responses(400, 401, 422, 429, 503))


def _pair(tokens: TokensDep, user: admin_pb2.User) -> TokenPair:
    access, refresh = tokens.staff_tokens(user.user_id, staff_role(user.role))
    return TokenPair(access_token=access, refresh_token=refresh, expires_in=tokens.access_ttl_s, user=user_from_proto(user))


@router.post("/login", response_model=TokenPair, dependencies=[Depends(limit_sign_in)], summary="Sign in")
async def login(body: LoginBody, admin: AdminClientDep, tokens: TokensDep) -> TokenPair:
    """Checks the email and password and returns an access and a refresh token.

    Attempts are limited per IP address; a wrong email and a wrong password get the
    same answer.
    """
    user = await admin.identity("Authenticate", admin_pb2.AuthenticateRequest(email=body.email, password=body.password))
    return _pair(tokens, user)


@router.post("/refresh", response_model=TokenPair, summary="Refresh tokens")
async def refresh(body: RefreshBody, admin: AdminClientDep, tokens: TokensDep) -> TokenPair:
    """Trades a refresh token for a new pair, re-reading the user so a disabled
    account or a changed role takes effect at the next refresh."""
    claims = tokens.decode(body.refresh_token, TokenType.REFRESH)
    try:
        user = await admin.identity("GetUser", admin_pb2.GetUserRequest(user_id=str(claims["sub"])))
    except ProblemError as exc:
        if exc.status in (400, 404):
            raise unauthenticated("The account no longer exists.") from None
        raise
    if user.disabled:
        raise unauthenticated("The account is disabled.")
    return _pair(tokens, user)


@router.get("/me", response_model=User, summary="Who am I")
async def me(principal: StaffDep, admin: AdminClientDep) -> User:
    """The signed-in staff user (for an API key: its owner)."""
    return user_from_proto(await admin.identity("GetUser", admin_pb2.GetUserRequest(user_id=principal.user_id)))



