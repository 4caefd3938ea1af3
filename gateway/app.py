"""The gateway's FastAPI application."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from fastapi.middleware import Middleware
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

from common import CODE_VERSION
from gateway.middleware import BodyLimitMiddleware, RequestIdMiddleware
from gateway.orchestrator import OrchestratorConnection
from gateway.problems import Problem, install_problem_handlers
from gateway.routers import health, interviews, pages
from gateway.settings import GatewaySettings

log = logging.getLogger(__name__)

try:
    # Swagger UI's files from PyPI, so /docs works without reaching a CDN.
    from swagger_ui_bundle import swagger_ui_path as _swagger_ui_path
except ImportError:  # pragma: no cover - the page falls back to FastAPI's CDN links
    _swagger_ui_path = None

_DOCS_ASSETS = "/docs-assets"

_DESCRIPTION = """\
REST gateway of the Excel-skills interviewer. Start an interview, fetch the current
question, submit answers (scored on submit) and finish.

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

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        connection = OrchestratorConnection(settings.orchestrator_address)
        app.state.orchestrator = connection
        log.info("orchestrator channel to %s opened", settings.orchestrator_address)
        try:
            yield
        finally:
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
        # Outermost first: the request id must be set before the body limit can
        # answer 413, so that response carries the id too.
        middleware=[
            Middleware(RequestIdMiddleware),
            Middleware(BodyLimitMiddleware, max_body_bytes=settings.max_body_bytes),
        ],
    )
    app.state.settings = settings
    install_problem_handlers(app)

    app.include_router(health.router)
    app.include_router(interviews.router)
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
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
