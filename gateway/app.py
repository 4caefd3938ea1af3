"""The gateway's FastAPI application."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import Depends, FastAPI
from fastapi.middleware import Middleware
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

from common import CODE_VERSION
from gateway.auth import TokenService
from gateway.deps import limit_ip
from gateway.events import EventBus, MemoryEventBus, RedisEventBus
from gateway.middleware import BodyLimitMiddleware, ClientAddressMiddleware, RequestIdMiddleware
from gateway.orchestrator import OrchestratorConnection
from gateway.problems import Problem, install_problem_handlers
from gateway.ratelimit import Limiter, MemoryLimiter, RedisLimiter
from gateway.routers import api_keys, auth, bank, health, interviews, invites, pages, reports, reviews, sessions, users
from gateway.settings import GatewaySettings

log = logging.getLogger(__name__)

try:
    # Swagger UI's files from PyPI, so /docs works without reaching a CDN.
    from swagger_ui_bundle import swagger_ui_path as _swagger_ui_path
except ImportError:  # pragma: no cover - the page falls back to FastAPI's CDN links
    _swagger_ui_path = None

_DOCS_ASSETS = "/docs-assets"
_DOCS_TAG_ORDER = ("health", "auth", "users", "api-keys", "interviews", "reports", "reviews", "invites", "sessions", "bank")

_DESCRIPTION = """\
REST gateway of the Excel-skills interviewer.

Staff sign in at `/api/v1/auth/login` and send `Authorization: Bearer <access_token>`;
internal callers send `X-API-Key`. They create interviews, each with a one-time invite
link, and read reports. A candidate uses the invite at `/api/v1/invites/accept` and
gets a token for their own session alone: fetch the current question, submit answers
(scored on submit, safe to retry with the same idempotency key) and finish. The
session's live events (answer scored, next question ready, time warnings) stream as
Server-Sent Events from `/api/v1/sessions/{session_id}/events`.

Every error is an RFC 9457 problem document (`application/problem+json`). Send an
`x-request-id` header to correlate logs; it is echoed on every response.
"""


def create_app(settings: GatewaySettings | None = None) -> FastAPI:
    """Builds the gateway application.

    Args:
        settings: Configuration; read from the environment when omitted.

    Returns:
        The app, with its OpenAPI document at ``/openapi.json``, Swagger UI at
        ``/docs`` and the candidate page at ``/``. Its lifespan opens the channel to
        the orchestrator and closes it on shutdown.
    """
    settings = settings or GatewaySettings()
    # Refuse before serving anything: a gateway with a guessable JWT secret must not run.
    settings.check_secrets()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        connection = OrchestratorConnection(settings.orchestrator_address)
        app.state.orchestrator = connection
        limiter: Limiter = RedisLimiter(settings.redis_url) if settings.redis_url else MemoryLimiter()
        app.state.limiter = limiter
        events: EventBus = RedisEventBus(settings.redis_url) if settings.redis_url else MemoryEventBus()
        app.state.events = events
        log.info("orchestrator channel to %s opened", settings.orchestrator_address)
        try:
            yield
        finally:
            await events.close()
            await limiter.close()
            await connection.close()
            log.info("orchestrator channel closed")

    local_docs = _swagger_ui_path is not None
    app = FastAPI(
        title="xlinterview gateway",
        version=CODE_VERSION,
        description=_DESCRIPTION,
        lifespan=lifespan,
        docs_url=None if local_docs else "/docs",
        redoc_url=None,
        # The docs list the API in reading order, whatever order the routers are matched in.
        openapi_tags=[{"name": name} for name in _DOCS_TAG_ORDER],
        # Outermost first: the client's address is settled before anything uses it,
        # and the request id must be set before the body limit can answer 413, so
        # that response carries the id too.
        middleware=[
            Middleware(ClientAddressMiddleware, trusted=settings.trusted_proxies),
            Middleware(RequestIdMiddleware),
            Middleware(BodyLimitMiddleware, max_body_bytes=settings.max_body_bytes),
        ],
    )
    app.state.settings = settings
    app.state.tokens = TokenService(
        settings.jwt_secret, settings.access_token_ttl_s, settings.refresh_token_ttl_s, settings.candidate_token_ttl_s
    )
    install_problem_handlers(app)

    # A request is matched against every route of each router in turn, in the order
    # they are included, so the candidate's, used on every step of an interview, go
    # first (matching cost 6% of the CPU per question read when they were last).
    # The sessions router applies limit_ip itself, inside its caller dependency.
    app.include_router(sessions.router)
    app.include_router(health.router)
    for api in (invites, auth, users, api_keys, interviews, reports, reviews, bank):
        app.include_router(api.router, dependencies=[Depends(limit_ip)])
    app.include_router(pages.router)
    app.mount("/static", StaticFiles(directory=pages.STATIC_DIR), name="static")
    if local_docs:
        _add_local_docs(app, Path(str(_swagger_ui_path)))
    _register_problem_schema(app)
    return app


def _add_local_docs(app: FastAPI, assets: Path) -> None:
    app.mount(_DOCS_ASSETS, StaticFiles(directory=assets), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json",
            title=f"{app.title} - Swagger UI",
            swagger_js_url=f"{_DOCS_ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{_DOCS_ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{_DOCS_ASSETS}/favicon-32x32.png",
        )


def _register_problem_schema(app: FastAPI) -> None:
    # Error responses reference #/components/schemas/Problem under the
    # application/problem+json media type; make sure the schema is defined.
    original = app.openapi

    def openapi() -> dict[str, object]:
        if app.openapi_schema is None:
            schema = original()
            schemas = schema.setdefault("components", {}).setdefault("schemas", {})
            schemas.setdefault("Problem", Problem.model_json_schema(ref_template="#/components/schemas/{model}"))
            # Credentials are read by a dependency rather than declared per route;
            # describing them here gives Swagger UI its "Authorize" button.
            schema["components"]["securitySchemes"] = {
                "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT",
                           "description": "A staff access token from /api/v1/auth/login, or a candidate token."},
                "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
            }
            schema["security"] = [{"bearer": []}, {"apiKey": []}, {}]
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
