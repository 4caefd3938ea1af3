"""``xli-gateway``: serves the REST gateway and the candidate page with uvicorn."""

from __future__ import annotations

import logging
import sys
from typing import Any

import uvicorn
from fastapi import FastAPI
from pydantic import ValidationError

from common.logging import configure_logging
from gateway.app import create_app
from gateway.settings import GatewaySettings, InsecureSettings

log = logging.getLogger("gateway")


def server_options(settings: GatewaySettings) -> dict[str, Any]:
    """uvicorn's options for the gateway, shared by :func:`main` and the tests.

    Args:
        settings: The gateway's settings.

    Returns:
        Keyword arguments of ``uvicorn.run`` / ``uvicorn.Config``, besides the app.
    """
    return {
        "host": settings.host,
        "port": settings.port,
        # Keep the JSON logging configured by common.logging instead of uvicorn's own format.
        "log_config": None,
        "log_level": settings.log_level.lower(),
        "server_header": False,
        # X-Forwarded-For is the gateway's call (XLI_TRUSTED_PROXIES); uvicorn's own
        # handling would otherwise trust FORWARDED_ALLOW_IPS, 127.0.0.1 by default.
        "proxy_headers": False,
        "timeout_graceful_shutdown": 5,
    }


def worker_app() -> FastAPI:
    """The app of one worker process when ``XLI_GATEWAY_WORKERS`` > 1.

    uvicorn starts each worker as a fresh interpreter (spawned, never forked: a forked
    gRPC runtime can deadlock), so each reads the same environment and sets up its
    own logging.
    """
    settings = GatewaySettings()
    configure_logging("gateway", settings.log_level, settings.log_json)
    return create_app(settings)


def main() -> None:
    """Reads the settings from the environment and serves until SIGINT/SIGTERM."""
    try:
        settings = GatewaySettings()
    except ValidationError as exc:
        configure_logging("gateway", "INFO", True)
        log.error("cannot start: %s", exc)
        sys.exit(2)
    configure_logging("gateway", settings.log_level, settings.log_json)
    try:
        # Built here even with several workers: bad settings stop the parent at once.
        app = create_app(settings)
    except InsecureSettings as exc:
        log.error("cannot start: %s", exc)
        sys.exit(2)
    host = f"[{settings.host}]" if ":" in settings.host else settings.host
    log.info(
        "gateway on http://%s:%d/ (API docs at /docs), orchestrator at %s",
        host,
        settings.port,
        settings.orchestrator_address,
    )
    if settings.workers > 1:
        log.info("%d worker processes", settings.workers)
        uvicorn.run("gateway.__main__:worker_app", factory=True, workers=settings.workers, **server_options(settings))
    else:
        uvicorn.run(app, **server_options(settings))


if __name__ == "__main__":
    main()
