"""Who is calling: JWTs issued and checked here, API keys checked by the Identity service.

Staff sign in with a password and get a short-lived access token and a longer refresh
token. A candidate's invite turns into a candidate token bound to one interview and
its session. Internal callers send an API key. All three become a :class:`Principal`,
the one thing routers authorize against.

Tokens are HS256 JWTs with an explicit ``typ`` claim, checked on every decode, so a
refresh token can never be used as an access token and a candidate token never as a
staff one.

A verified access or candidate token is remembered, keyed by its exact text, until it
expires: a candidate sends the same token on every request, and verifying it each time
(base64, JSON, HMAC and claim checks) cost about 14% of the gateway's CPU per request
when reading questions (benchmarks/gateway, A/B). That is safe because the outcome
depends only on the text, the secret and the clock: the same text verifies the same way, and the only claim that turns a valid token invalid with time
is ``exp``, which the cache checks on every use. Tokens that fail are not remembered.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import jwt

from gateway.problems import ProblemError

ISSUER = "xlinterview-gateway"
_ALGORITHM = "HS256"


class Role(StrEnum):
    """What a caller may do; see the roles table in ``gateway/README.md``."""

    ADMIN = "admin"
    INTERVIEWER = "interviewer"
    ANALYST = "analyst"
    CANDIDATE = "candidate"


STAFF_ROLES = frozenset({Role.ADMIN, Role.INTERVIEWER, Role.ANALYST})


class TokenType(StrEnum):
    ACCESS = "access"
    REFRESH = "refresh"
    CANDIDATE = "candidate"


@dataclass(frozen=True)
class Principal:
    """An authenticated caller.

    Attributes:
        role: What the caller may do.
        user_id: The staff user acting (for an API key, its owner); empty for candidates.
        via: ``password`` (a staff JWT), ``api_key`` or ``invite`` (a candidate token).
        key_id: The API key used, when ``via`` is ``api_key``.
        interview_id: The candidate's interview.
        session_id: The candidate's session; the only one they may touch.
    """

    role: Role
    user_id: str = ""
    via: str = "password"
    key_id: str = ""
    interview_id: str = ""
    session_id: str = ""

    def owns(self, owner_user_id: str) -> bool:
        """Whether a staff principal may see an interview owned by ``owner_user_id``.

        Admins and analysts see every interview; interviewers only their own.
        """
        if self.role in (Role.ADMIN, Role.ANALYST):
            return True
        return self.role == Role.INTERVIEWER and bool(self.user_id) and self.user_id == owner_user_id

    def owner_filter(self) -> str:
        """The ``owner_user_id`` of a staff list or change request made by this principal.

        Interviewers work on their own interviews only; admins and analysts on every
        interview, which the staff services ask for with an empty owner.
        """
        return self.user_id if self.role == Role.INTERVIEWER else ""


def unauthenticated(detail: str) -> ProblemError:
    """A 401 problem asking for a bearer token."""
    return ProblemError(401, "unauthenticated", "Not authenticated", detail, headers={"WWW-Authenticate": "Bearer"})


class TokenService:
    """Issues and verifies the gateway's JWTs.

    Attributes:
        VERIFIED_CACHE_SIZE: How many verified tokens :meth:`principal` remembers;
            about 0.5 KB each.

    Args:
        secret: HMAC key.
        access_ttl_s: Lifetime of access tokens.
        refresh_ttl_s: Lifetime of refresh tokens.
        candidate_ttl_s: Lifetime of candidate tokens.
    """

    VERIFIED_CACHE_SIZE = 8192

    def __init__(self, secret: str, access_ttl_s: int, refresh_ttl_s: int, candidate_ttl_s: int) -> None:
        self._secret = secret
        # token text -> (its principal, its exp); insertion-ordered, oldest evicted first.
        self._verified: dict[str, tuple[Principal, float]] = {}
        self.access_ttl_s = access_ttl_s
        self.refresh_ttl_s = refresh_ttl_s
        self.candidate_ttl_s = candidate_ttl_s

    def _encode(self, typ: TokenType, subject: str, ttl_s: int, **claims: Any) -> str:
        now = int(time.time())
        payload = {
            "iss": ISSUER,
            "sub": subject,
            "typ": typ.value,
            "iat": now,
            "exp": now + ttl_s,
            "jti": uuid.uuid4().hex,
            **claims,
        }
        return jwt.encode(payload, self._secret, algorithm=_ALGORITHM)

    def staff_tokens(self, user_id: str, role: Role) -> tuple[str, str]:
        """An access and a refresh token for a staff user."""
        return (
            self._encode(TokenType.ACCESS, user_id, self.access_ttl_s, role=role.value),
            self._encode(TokenType.REFRESH, user_id, self.refresh_ttl_s),
        )

    def candidate_token(self, interview_id: str, session_id: str) -> str:
        """A token that lets its holder take exactly this interview's session."""
        return self._encode(
            TokenType.CANDIDATE, interview_id, self.candidate_ttl_s, role=Role.CANDIDATE.value, sid=session_id
        )

    def decode(self, token: str, *expected: TokenType) -> dict[str, Any]:
        """Verifies a token's signature, expiry, issuer and type.

        Raises:
            ProblemError: 401 when anything is wrong; the detail does not say what,
                beyond "expired", so a forger learns nothing.
        """
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                self._secret,
                algorithms=[_ALGORITHM],
                issuer=ISSUER,
                options={"require": ["exp", "iat", "sub", "typ", "iss"]},
            )
        except jwt.ExpiredSignatureError:
            raise unauthenticated("The token has expired; sign in again.") from None
        except jwt.InvalidTokenError:
            raise unauthenticated("The token is not valid.") from None
        if claims.get("typ") not in {t.value for t in expected}:
            raise unauthenticated("The token is not valid here.")
        return claims

    def principal(self, token: str) -> Principal:
        """The caller an access or candidate token stands for.

        Raises:
            ProblemError: 401 for a bad token.
        """
        remembered = self._verified.get(token)
        if remembered is not None:
            principal, expires = remembered
            # PyJWT's own test: a token is expired once exp <= now.
            if time.time() < expires:
                return principal
            del self._verified[token]
            raise unauthenticated("The token has expired; sign in again.")
        claims = self.decode(token, TokenType.ACCESS, TokenType.CANDIDATE)
        principal = self._principal_of(claims)
        if len(self._verified) >= self.VERIFIED_CACHE_SIZE:
            self._verified.pop(next(iter(self._verified)))
        self._verified[token] = (principal, float(claims["exp"]))
        return principal

    @staticmethod
    def _principal_of(claims: dict[str, Any]) -> Principal:
        try:
            role = Role(str(claims.get("role")))
        except ValueError:
            raise unauthenticated("The token is not valid.") from None
        if claims["typ"] == TokenType.CANDIDATE:
            if role != Role.CANDIDATE or not claims.get("sid"):
                raise unauthenticated("The token is not valid.")
            return Principal(role=role, via="invite", interview_id=str(claims["sub"]), session_id=str(claims["sid"]))
        if role not in STAFF_ROLES:
            raise unauthenticated("The token is not valid.")
        return Principal(role=role, user_id=str(claims["sub"]))
