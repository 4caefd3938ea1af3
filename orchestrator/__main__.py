"""``xli-orchestrator``: runs the Orchestrator gRPC service."""

from __future__ import annotations

import logging
import sys

import uvloop

from common.errors import Unavailable
from common.grpc_server import create_server, serve
from common.logging import configure_logging
from common.metrics import start_metrics_server
from orchestrator.app import SERVICE_NAME, Orchestrator
from orchestrator.bank import BankError
from orchestrator.settings import MissingSetting, OrchestratorSettings
from orchestrator.staff import STAFF_SERVICE_NAMES

log = logging.getLogger("orchestrator")


async def run(settings: OrchestratorSettings) -> None:
    """Starts the orchestrator and serves until SIGTERM/SIGINT."""
    app = Orchestrator(settings)
    await app.start()
    server = create_server()
    app.add_to_server(server)
    await serve(server, settings.listen_address, [SERVICE_NAME, *STAFF_SERVICE_NAMES], on_stop=app.close)


def main() -> None:
    """Console entry point; exits with status 2 on configuration errors, 1 when a
    backing service cannot be reached."""
    settings = OrchestratorSettings()
    configure_logging("orchestrator", settings.log_level, settings.log_json)
    try:
        settings.require_backing_urls()
        start_metrics_server(settings.metrics_port)
        # uvloop, as the gateway's uvicorn runs: the orchestrator's CPU per question read and
        # per answer is 4-11% lower on it, side by side with asyncio's own loop (`make
        # bench-loop`, benchmarks/README.md); grpc.aio and asyncpg run on any asyncio loop.
        uvloop.run(run(settings))
    except (MissingSetting, BankError) as exc:
        log.error("cannot start: %s", exc)
        sys.exit(2)
    except Unavailable as exc:
        log.error("cannot start: %s", exc.message)
        sys.exit(1)


if __name__ == "__main__":
    main()
