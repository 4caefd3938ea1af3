"""Structured JSON logs with a request id carried through contextvars."""

from __future__ import annotations

import contextvars
import itertools
import logging
import os
import sys

from pythonjsonlogger.json import JsonFormatter

request_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="")

# A random prefix per process and a counter: as unique as a uuid4 for telling requests apart
# in logs, without uuid4's getrandom call on every request, which releases the GIL on the
# event loop's thread and can then wait for it behind a worker thread.
_REQUEST_ID_PREFIX = os.urandom(8).hex()
_request_counter = itertools.count()


def new_request_id() -> str:
    """A fresh request id: 32 hex digits, unique across this process's lifetime.

    Processes started by ``fork`` after import would share the prefix; the services start
    theirs with ``spawn`` or as fresh interpreters.
    """
    return f"{_REQUEST_ID_PREFIX}{next(_request_counter):016x}"


class _RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id_var.get()
        return True


def configure_logging(service: str, level: str = "INFO", json: bool = True) -> None:
    """Sends the process's logs to stderr, one JSON object a line when ``json``.

    Args:
        service: Name written into every record.
        level: Logging level name.
        json: JSON lines when true, plain text otherwise.
    """
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(_RequestIdFilter())
    if json:
        handler.setFormatter(
            JsonFormatter(
                "%(asctime)s %(levelname)s %(name)s %(message)s %(request_id)s",
                static_fields={"service": service},
                rename_fields={"levelname": "level", "asctime": "time"},
            )
        )
    else:
        handler.setFormatter(
            logging.Formatter(f"%(asctime)s {service} %(levelname)s %(name)s [%(request_id)s] %(message)s")
        )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
