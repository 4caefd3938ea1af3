"""``xli-gateway``: serves the REST gateway and the candidate page with uvicorn."""

from __future__ import annotations

import logging
import sys

import uvicorn

from common.logging import configure_logging
from gateway.app import create_app
from gateway.settings import GatewaySettings, InsecureSettings

log = logging.getLogger("gateway")


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
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        # Keep the JSON logging configured above instead of uvicorn's own format.
        log_config=None,
        log_level=settings.log_level.lower(),
        server_header=False,
        timeout_graceful_shutdown=5,
    )


if __name__ == "__main__":
    main()
