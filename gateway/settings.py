"""Settings of the REST gateway, read from ``XLI_*`` environment variables."""

from __future__ import annotations

from ipaddress import IPv4Network, IPv6Network, ip_network
from typing import Annotated, Any

from pydantic import AliasChoices, Field, field_validator, model_validator
from pydantic_settings import NoDecode, SettingsConfigDict

from common.settings import ServiceSettings

DEV_JWT_SECRET = "xli-development-jwt-secret-not-for-production"
MIN_JWT_SECRET_CHARS = 32


class InsecureSettings(RuntimeError):
    """A built-in or weak secret is configured outside development."""


class GatewaySettings(ServiceSettings):
    """How the gateway listens and how it reaches the orchestrator.

    Attributes:
        orchestrator_address: ``host:port`` of the orchestrator's gRPC server
            (``XLI_ORCHESTRATOR_ADDRESS``).
        host: Interface the HTTP server binds (``XLI_GATEWAY_HOST``).
        port: Port the HTTP server binds (``XLI_GATEWAY_PORT``).
        workers: HTTP worker processes sharing the port (``XLI_GATEWAY_WORKERS``). One
            worker uses about one core; more need ``REDIS_URL``, since rate limits
            and live events must be shared by every worker.
        grpc_deadline_s: Deadline of every call to the orchestrator. Generous because
            submitting an answer waits for it to be scored (``XLI_GRPC_DEADLINE_S``).
        readiness_deadline_s: Deadline of the health check behind ``/readyz``; short so
            a load balancer's probe never piles up (``XLI_READINESS_DEADLINE_S``).
        max_body_bytes: Largest request body accepted; larger ones get 413
            (``XLI_MAX_BODY_BYTES``).
        jwt_secret: HMAC key of the access, refresh and candidate tokens
            (``XLI_JWT_SECRET``); the built-in default works only in development.
        access_token_ttl_s: Lifetime of a staff access token (``XLI_ACCESS_TOKEN_TTL_S``).
        refresh_token_ttl_s: Lifetime of a staff refresh token (``XLI_REFRESH_TOKEN_TTL_S``).
        candidate_token_ttl_s: Lifetime of the token an invite turns into
            (``XLI_CANDIDATE_TOKEN_TTL_S``); bounds how long a candidate can resume.
        public_url: Base URL invite links are built on (``XLI_PUBLIC_URL``); the
            request's own base URL when empty.
        redis_url: Redis for the rate limits (``REDIS_URL``); without it the limits
            are kept in this process only, which production refuses.
        rate_limit_ip_per_min: Requests per minute from one IP to the API.
        rate_limit_api_key_per_min: Requests per minute with one API key.
        rate_limit_candidate_per_min: Requests per minute in one candidate session.
        rate_limit_login_per_min: Sign-in and invite attempts per minute from one IP.
        event_keepalive_s: Longest silence on a Server-Sent Events stream before a
            keep-alive comment (``XLI_EVENT_KEEPALIVE_S``).
        event_retry_ms: How long a browser waits before reconnecting a dropped event
            stream (``XLI_EVENT_RETRY_MS``).
        time_warnings_s: Seconds left at which a session's event stream sends
            ``time_warning`` (``XLI_TIME_WARNINGS_S``, e.g. ``[600, 300, 60]``).
        trusted_proxies: Networks of the reverse proxies in front of the gateway
            (``XLI_TRUSTED_PROXIES``, comma-separated CIDRs or addresses, e.g.
            ``10.0.0.0/8,fd00::/8``). Only a peer in them may name the client in
            ``X-Forwarded-For``, for the per-IP limits and the logs; empty (the
            default) trusts no one, as anyone can send the header.
    """

    # The explicit env names below are not the prefix + field name, so constructing
    # GatewaySettings(host=...) in code and tests needs field names accepted too.
    model_config = SettingsConfigDict(validate_by_name=True)

    orchestrator_address: str = Field(default="127.0.0.1:50052", validation_alias="XLI_ORCHESTRATOR_ADDRESS")
    host: str = Field(default="127.0.0.1", validation_alias="XLI_GATEWAY_HOST")
    port: int = Field(default=8000, ge=0, le=65535, validation_alias="XLI_GATEWAY_PORT")
    workers: int = Field(default=1, ge=1, le=64, validation_alias="XLI_GATEWAY_WORKERS")
    grpc_deadline_s: float = Field(default=10.0, gt=0)
    readiness_deadline_s: float = Field(default=1.0, gt=0)
    max_body_bytes: int = Field(default=64 * 1024, gt=0)
    jwt_secret: str = Field(default=DEV_JWT_SECRET, repr=False)
    access_token_ttl_s: int = Field(default=15 * 60, gt=0)
    refresh_token_ttl_s: int = Field(default=12 * 3600, gt=0)
    candidate_token_ttl_s: int = Field(default=24 * 3600, gt=0)
    public_url: str = ""
    redis_url: str | None = Field(default=None, validation_alias=AliasChoices("REDIS_URL", "redis_url"))
    rate_limit_ip_per_min: int = Field(default=600, gt=0)
    rate_limit_api_key_per_min: int = Field(default=1200, gt=0)
    rate_limit_candidate_per_min: int = Field(default=120, gt=0)
    rate_limit_login_per_min: int = Field(default=10, gt=0)
    event_keepalive_s: float = Field(default=15.0, gt=0)
    event_retry_ms: int = Field(default=3000, ge=0)
    time_warnings_s: list[Annotated[int, Field(gt=0)]] = Field(default_factory=lambda: [600, 300, 60])
    # NoDecode: the environment gives a plain comma-separated list, not JSON.
    trusted_proxies: Annotated[list[IPv4Network | IPv6Network], NoDecode] = Field(default_factory=list)

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _split_networks(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = [part for part in (p.strip() for p in value.split(",")) if part]
        if isinstance(value, list):
            # strict=False: "10.0.0.1/8" means the network it is in, as a reader expects.
            return [ip_network(v, strict=False) if isinstance(v, str) else v for v in value]
        return value

    @model_validator(mode="after")
    def _shared_state_for_workers(self) -> GatewaySettings:
        if self.workers > 1 and not self.redis_url:
            # Each worker would count its own rate limits and hear only its own events.
            raise ValueError("XLI_GATEWAY_WORKERS > 1 needs REDIS_URL: workers share rate limits and events through it")
        return self

    def check_secrets(self) -> None:
        """Refuses to run outside development with built-in secrets or in-process limits.

        Raises:
            InsecureSettings: Naming each setting to fix.
        """
        if self.environment == "development":
            return
        problems = []
        if self.jwt_secret == DEV_JWT_SECRET or len(self.jwt_secret) < MIN_JWT_SECRET_CHARS:
            problems.append(f"XLI_JWT_SECRET must be a random secret of at least {MIN_JWT_SECRET_CHARS} characters")
        if not self.redis_url:
            problems.append("REDIS_URL must be set: rate limits have to be shared by every gateway")
        if problems:
            raise InsecureSettings(f"refusing to start with XLI_ENVIRONMENT={self.environment}: " + "; ".join(problems))
