"""``xli-gateway``: serves the REST gateway and the candidate page with uvicorn."""

from __future__ import annotations

import logging
import sys
from typing import Any

import uvicorn

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


def main() -> None:
    """Reads the settings from the environment and serves until SIGINT/SIGTERM."""
    settings = GatewaySettings()
    configure_logging("gateway", settings.log_level, settings.log_json)
    try:
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
    uvicorn.run(app, **server_options(settings))


if __name__ == "__main__":
    main()
