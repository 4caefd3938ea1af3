"""The Identity service: staff users with argon2id password hashes, and API keys.

Passwords are hashed with argon2id (``argon2-cffi``) on a worker thread, because one
hash costs tens of milliseconds of CPU and must not stall the event loop. API keys
are 256-bit random secrets, so a SHA-256 digest is enough to store them: nobody can
brute-force that space, and the digest can be looked up by equality on every request.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import secrets
import uuid
from collections.abc import Callable
from typing import Any, TypeVar

import asyncpg
import grpc
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from pydantic import Field

from common.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound, Unauthenticated
from common.settings import ServiceSettings
from orchestrator.admin_db import AdminDb, timestamp
from orchestrator.settings import MissingSetting
from xlinterview.v1 import admin_pb2, admin_pb2_grpc

log = logging.getLogger(__name__)

DEV_ADMIN_EMAIL = "admin@xlinterview.local"
DEV_ADMIN_PASSWORD = "xli-dev-admin-password"
MIN_PASSWORD_CHARS = 12
MAX_PASSWORD_CHARS = 1024

ROLE_NAMES = {
    admin_pb2.ROLE_ADMIN: "admin",
    admin_pb2.ROLE_INTERVIEWER: "interviewer",
    admin_pb2.ROLE_ANALYST: "analyst",
}
ROLES_BY_NAME = {name: role for role, name in ROLE_NAMES.items()}

# Deliberately loose: the address is an identifier here, not a mailbox we verify.
_EMAIL = re.compile(r"[^@\s]{1,64}@[^@\s]{1,255}")
API_KEY_PREFIX = "xli_"

_hasher = PasswordHasher()
# Verified against when the email is unknown, so a wrong address costs as much time
# as a wrong password and response times do not reveal which accounts exist.
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))

AUTH_FAILED = "wrong email or password"

_T = TypeVar("_T")


class IdentitySettings(ServiceSettings):
    """The initial admin and invite defaults.

    Attributes:
        admin_email: The admin created at first start when no admin exists
            (``XLI_ADMIN_EMAIL``).
        admin_password: That admin's password (``XLI_ADMIN_PASSWORD``). The built-in
            default is accepted only in development.
        invite_ttl_s: How long an invite link stays valid (``XLI_INVITE_TTL_S``).
        password_hash_concurrency: Most argon2id hashes computed at once
            (``XLI_PASSWORD_HASH_CONCURRENCY``); see :class:`IdentityService`.
    """

    admin_email: str = DEV_ADMIN_EMAIL
    admin_password: str = Field(default=DEV_ADMIN_PASSWORD, repr=False)
    invite_ttl_s: int = Field(default=7 * 24 * 3600, gt=0, le=90 * 24 * 3600)
    password_hash_concurrency: int = Field(default=2, ge=1)

    def check_secrets(self, environment: str) -> None:
        """Refuses built-in or weak secrets outside development.

        Raises:
            MissingSetting: When ``environment`` is not ``development`` and the admin
                password is the built-in default or shorter than 12 characters.
        """
        if environment == "development":
            return
        if self.admin_password == DEV_ADMIN_PASSWORD or len(self.admin_password) < MIN_PASSWORD_CHARS:
            raise MissingSetting(
                f"XLI_ADMIN_PASSWORD must be set to a password of at least {MIN_PASSWORD_CHARS} characters "
                f"(not the development default) when XLI_ENVIRONMENT={environment}"
            )


def hash_password(password: str) -> str:
    """An argon2id hash of ``password`` (blocking; call on a worker thread)."""
    return _hasher.hash(password)


def digest(secret: str) -> bytes:
    """The SHA-256 digest a high-entropy secret (API key, invite token) is stored as."""
    return hashlib.sha256(secret.encode()).digest()


def normalize_email(raw: str) -> str:
    """The stored form of an email address.

    Raises:
        InvalidArgument: When it does not look like an address.
    """
    email = raw.strip().lower()
    if not _EMAIL.fullmatch(email):
        raise InvalidArgument("email must look like name@example.com")
    return email


def parse_uuid(raw: str, field: str) -> uuid.UUID:
    """Parses an id field.

    Raises:
        InvalidArgument: When it is empty or not a UUID.
    """
    if not raw:
        raise InvalidArgument(f"{field} is required")
    try:
        return uuid.UUID(raw)
    except ValueError:
        raise InvalidArgument(f"{field} {raw[:64]!r} is not a UUID") from None


def role_name(role: int) -> str:
    """The stored name of a proto role.

    Raises:
        InvalidArgument: For ``ROLE_UNSPECIFIED`` or an unknown value.
    """
    name = ROLE_NAMES.get(role)  # type: ignore[call-overload]
    if name is None:
        raise InvalidArgument("role must be ROLE_ADMIN, ROLE_INTERVIEWER or ROLE_ANALYST")
    return name


def _user(row: Any) -> admin_pb2.User:
    return admin_pb2.User(
        user_id=str(row["user_id"]),
        email=row["email"],
        display_name=row["display_name"],
        role=ROLES_BY_NAME[row["role"]],
        disabled=row["disabled"],
        created_at=timestamp(row["created_at"]),
    )


def _api_key(row: Any) -> admin_pb2.ApiKey:
    return admin_pb2.ApiKey(
        key_id=row["key_id"],
        name=row["name"],
        role=ROLES_BY_NAME[row["role"]],
        owner_user_id=str(row["owner_user_id"]),
        revoked=row["revoked_at"] is not None,
        created_at=timestamp(row["created_at"]),
        rotated_at=timestamp(row["rotated_at"]),
        revoked_at=timestamp(row["revoked_at"]),
    )


_USER_COLUMNS = "user_id, email, display_name, role, disabled, created_at"
_KEY_COLUMNS = "key_id, name, role, owner_user_id, created_at, rotated_at, revoked_at"


def _new_api_secret(key_id: str) -> str:
    # The key id is part of the secret so a leaked secret says which key to revoke.
    return f"{API_KEY_PREFIX}{key_id}_{secrets.token_urlsafe(32)}"


class IdentityService(admin_pb2_grpc.IdentityServicer):
    """Implements ``xlinterview.v1.Identity`` on the ``users`` and ``api_keys`` tables.

    At most ``hash_concurrency`` password hashes run at once, the others wait their turn.
    One argon2id hash holds 64 MiB and runs four lanes in parallel, so a burst of
    sign-ins (a team signing in at nine) would otherwise take the orchestrator's memory
    and both cores from the interviews it serves: 30 at once, six at a time on asyncio's
    worker threads, reached 420 MB and 179% CPU (benchmarks/README.md, load row I).

    Args:
        db: The staff pool.
        hash_concurrency: Most hashes computed at once.
    """

    def __init__(self, db: AdminDb, hash_concurrency: int = 2) -> None:
        self._db = db
        self._hashing = asyncio.Semaphore(hash_concurrency)

    async def _argon2(self, work: Callable[..., _T], *args: str) -> _T:
        """Runs a blocking argon2 call on a worker thread, in turn with the others."""
        async with self._hashing:
            return await asyncio.to_thread(work, *args)

    async def ensure_initial_admin(self, settings: IdentitySettings) -> None:
        """Creates the configured admin when no admin exists yet.

        An existing admin is left alone: changing ``XLI_ADMIN_PASSWORD`` later does not
        reset anyone's password.
        """
        async with self._db.connection("check for an admin") as conn:
            exists = await conn.fetchval("SELECT EXISTS (SELECT 1 FROM users WHERE role = 'admin')")
        if exists:
            return
        email = normalize_email(settings.admin_email)
        password_hash = await self._argon2(hash_password, settings.admin_password)
        async with self._db.connection("create the initial admin") as conn:
            await conn.execute(
                "INSERT INTO users (user_id, email, display_name, role, password_hash)"
                " VALUES ($1, $2, 'Administrator', 'admin', $3) ON CONFLICT (email) DO NOTHING",
                uuid.uuid4(),
                email,
                password_hash,
            )
        log.info("created the initial admin %s", email)

    async def Authenticate(
        self, request: admin_pb2.AuthenticateRequest, context: grpc.aio.ServicerContext
    ) -> admin_pb2.User:
        try:
            email = normalize_email(request.email)
        except InvalidArgument:
            email = ""
        password = request.password[:MAX_PASSWORD_CHARS]
        row = None
        if email:
            async with self._db.connection("read a user") as conn:
                row = await conn.fetchrow(f"SELECT {_USER_COLUMNS}, password_hash FROM users WHERE email = $1", email)
        stored = row["password_hash"] if row is not None else _DUMMY_HASH
        try:
            await self._argon2(_hasher.verify, stored, password)
            ok = row is not None and not row["disabled"]
        except (VerificationError, InvalidHashError):
            ok = False
        if not ok or row is None:
            raise Unauthenticated(AUTH_FAILED)
        if _hasher.check_needs_rehash(stored):
            # Parameters were raised since this hash was made; upgrade it while the
            # plain password is at hand.
            new_hash = await self._argon2(hash_password, password)
            async with self._db.connection("upgrade a password hash") as conn:
                await conn.execute("UPDATE users SET password_hash = $2 WHERE user_id = $1", row["user_id"], new_hash)
        return _user(row)

    async def GetUser(self, request: admin_pb2.GetUserRequest, context: grpc.aio.ServicerContext) -> admin_pb2.User:
        user_id = parse_uuid(request.user_id, "user_id")
        async with self._db.connection("read a user") as conn:
            row = await conn.fetchrow(f"SELECT {_USER_COLUMNS} FROM users WHERE user_id = $1", user_id)
        if row is None:
            raise NotFound(f"no user {user_id}")
        return _user(row)

    async def CreateUser(
        self, request: admin_pb2.CreateUserRequest, context: grpc.aio.ServicerContext
    ) -> admin_pb2.User:
        email = normalize_email(request.email)
        role = role_name(request.role)
        if not MIN_PASSWORD_CHARS <= len(request.password) <= MAX_PASSWORD_CHARS:
            raise InvalidArgument(f"password must be {MIN_PASSWORD_CHARS} to {MAX_PASSWORD_CHARS} characters")
        display_name = request.display_name.strip()
        if len(display_name) > 200:
            raise InvalidArgument("display_name is longer than 200 characters")
        password_hash = await self._argon2(hash_password, request.password)
        async with self._db.connection("create a user") as conn:
            try:
                row = await conn.fetchrow(
                    f"INSERT INTO users (user_id, email, display_name, role, password_hash)"
                    f" VALUES ($1, $2, $3, $4, $5) RETURNING {_USER_COLUMNS}",
                    uuid.uuid4(),
                    email,
                    display_name,
                    role,
                    password_hash,
                )
            except asyncpg.UniqueViolationError:
                raise AlreadyExists(f"a user with email {email} already exists") from None
        log.info("created %s user %s", role, row["user_id"])
        return _user(row)

    async def ListUsers(
        self, request: admin_pb2.ListUsersRequest, context: grpc.aio.ServicerContext
    ) -> admin_pb2.ListUsersResponse:
        async with self._db.connection("list users") as conn:
            rows = await conn.fetch(f"SELECT {_USER_COLUMNS} FROM users ORDER BY created_at")
        return admin_pb2.ListUsersResponse(users=[_user(r) for r in rows])

    async def CreateApiKey(
        self, request: admin_pb2.CreateApiKeyRequest, context: grpc.aio.ServicerContext
    ) -> admin_pb2.IssuedApiKey:
        name = request.name.strip()
        if not 1 <= len(name) <= 100:
            raise InvalidArgument("name is required (at most 100 characters)")
        role = role_name(request.role)
        owner = parse_uuid(request.owner_user_id, "owner_user_id")
        key_id = secrets.token_hex(6)
        secret = _new_api_secret(key_id)
        async with self._db.connection("create an API key") as conn:
            try:
                row = await conn.fetchrow(
                    f"INSERT INTO api_keys (key_id, name, role, owner_user_id, secret_sha256)"
                    f" VALUES ($1, $2, $3, $4, $5) RETURNING {_KEY_COLUMNS}",
                    key_id,
                    name,
                    role,
                    owner,
                    digest(secret),
                )
            except asyncpg.ForeignKeyViolationError:
                raise NotFound(f"no user {owner}") from None
        log.info("created API key %s (%s) for user %s", key_id, role, owner)
        return admin_pb2.IssuedApiKey(key=_api_key(row), secret=secret)

    async def RotateApiKey(
        self, request: admin_pb2.ApiKeyRequest, context: grpc.aio.ServicerContext
    ) -> admin_pb2.IssuedApiKey:
        key_id = request.key_id
        secret = _new_api_secret(key_id)
        async with self._db.connection("rotate an API key") as conn:
            row = await conn.fetchrow(
                f"UPDATE api_keys SET secret_sha256 = $2, rotated_at = now()"
                f" WHERE key_id = $1 AND revoked_at IS NULL RETURNING {_KEY_COLUMNS}",
                key_id,
                digest(secret),
            )
            if row is None:
                await self._key_missing_or_revoked(conn, key_id)
        log.info("rotated API key %s", key_id)
        return admin_pb2.IssuedApiKey(key=_api_key(row), secret=secret)

    async def RevokeApiKey(self, request: admin_pb2.ApiKeyRequest, context: grpc.aio.ServicerContext) -> admin_pb2.ApiKey:
        async with self._db.connection("revoke an API key") as conn:
            row = await conn.fetchrow(
                f"UPDATE api_keys SET revoked_at = COALESCE(revoked_at, now())"
                f" WHERE key_id = $1 RETURNING {_KEY_COLUMNS}",
                request.key_id,
            )
        if row is None:
            raise NotFound(f"no API key {request.key_id[:64]!r}")
        log.info("revoked API key %s", request.key_id)
        return _api_key(row)

    async def ListApiKeys(
        self, request: admin_pb2.ListApiKeysRequest, context: grpc.aio.ServicerContext
    ) -> admin_pb2.ListApiKeysResponse:
        async with self._db.connection("list API keys") as conn:
            rows = await conn.fetch(f"SELECT {_KEY_COLUMNS} FROM api_keys ORDER BY created_at")
        return admin_pb2.ListApiKeysResponse(keys=[_api_key(r) for r in rows])

    async def VerifyApiKey(
        self, request: admin_pb2.VerifyApiKeyRequest, context: grpc.aio.ServicerContext
    ) -> admin_pb2.ApiKey:
        secret = request.secret
        row = None
        if secret.startswith(API_KEY_PREFIX) and len(secret) <= 200:
            async with self._db.connection("verify an API key") as conn:
                row = await conn.fetchrow(
                    f"SELECT k.{_KEY_COLUMNS.replace(', ', ', k.')} FROM api_keys k"
                    " JOIN users u ON u.user_id = k.owner_user_id"
                    " WHERE k.secret_sha256 = $1 AND k.revoked_at IS NULL AND NOT u.disabled",
                    digest(secret),
                )
        if row is None:
            raise Unauthenticated("unknown or revoked API key")
        return _api_key(row)

    @staticmethod
    async def _key_missing_or_revoked(conn: asyncpg.Connection, key_id: str) -> None:
        exists = await conn.fetchval("SELECT EXISTS (SELECT 1 FROM api_keys WHERE key_id = $1)", key_id)
        if exists:
            raise FailedPrecondition(f"API key {key_id} is revoked; create a new one")
        raise NotFound(f"no API key {key_id[:64]!r}")
