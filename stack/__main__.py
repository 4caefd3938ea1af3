"""``xli-up``: runs the whole system on embedded defaults and prints the URL to open."""

from __future__ import annotations

import signal
import sys
import time

from common.logging import configure_logging
from orchestrator.identity import DEV_ADMIN_PASSWORD, IdentitySettings
from stack.runner import Stack, StackError
from stack.settings import StackSettings


def main() -> None:
    """Console entry point: start everything, print the URL, run until Ctrl-C."""
    settings = StackSettings()
    configure_logging("stack", settings.log_level, json=False)
    stack = Stack(settings)
    started = time.monotonic()
    print(f"Starting xlinterview (data in {stack.data_dir}, logs in {stack.log_dir}) ...", flush=True)
    try:
        stack.start()
    except StackError as exc:
        print(f"error: the system did not start: {exc}", file=sys.stderr)
        sys.exit(1)
    print(f"Ready in {time.monotonic() - started:.1f} s.", flush=True)
    print(f"  Open:       {stack.gateway_url}/", flush=True)
    print(f"  REST docs:  {stack.gateway_url}/docs", flush=True)
    print(f"  Dashboard:  {stack.gateway_url}/dashboard", flush=True)
    identity = IdentitySettings()
    if identity.admin_password == DEV_ADMIN_PASSWORD:
        # Development only: production refuses to start with this password.
        print(f"  Sign in as: {identity.admin_email} / {identity.admin_password} (development default)", flush=True)
    print(f"  gRPC:       scorer {stack.scorer_address}, orchestrator {stack.orchestrator_address}", flush=True)
    print("Press Ctrl-C to stop.", flush=True)

    stopping = False

    def request_stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    try:
        while not stopping:
            dead = stack.check_alive()
            if dead:
                print(f"error: {', '.join(dead)} exited; see {stack.log_dir}", file=sys.stderr)
                break
            time.sleep(0.5)
    finally:
        print("Stopping ...", flush=True)
        stack.stop()


if __name__ == "__main__":
    main()
