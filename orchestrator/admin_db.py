"""The connection pool of the staff-facing services (identities, interviews, invites).

A pool of its own, small, rather than the interview pool of :mod:`orchestrator.db`:
staff traffic is light, and a burst of dashboard requests must never take the
connections candidates' answers are stored with.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime

import asyncpg
from google.protobuf.timestamp_pb2 import Timestamp

from common.errors import ServiceError, Unavailable
from orchestrator.db import CONNECT_ERRORS, UNAVAILABLE_ERRORS, init_connection, keep_session_state

log = logging.getLogger(__name__)

class AdminDb:
    """An asyncpg pool whose every use is bounded by a timeout.

    Args:
        pool: The open pool.
        timeout_s: Upper bound of one operation, waiting for a connection included.
    """

    def __init__(self, pool: asyncpg.Pool, timeout_s: float) -> None:
        self._pool = pool
        self._timeout_s = timeout_s

    @classmethod
    async def connect(cls, dsn: str, timeout_s: float, max_size: int = 4) -> AdminDb:
        """Opens the pool. The interview pool has already waited for PostgreSQL to start.

        Raises:
            Unavailable: When PostgreSQL cannot be reached.
        """
        try:
            pool = await asyncio.wait_for(
                asyncpg.create_pool(
                    dsn, min_size=1, max_size=max_size, command_timeout=timeout_s, init=init_connection,
                    reset=keep_session_state,
                ),
                timeout=timeout_s * 2,
            )
        except CONNECT_ERRORS as exc:
            raise Unavailable(f"cannot reach PostgreSQL: {exc or type(exc).__name__}") from exc
        return cls(pool, timeout_s)

    async def close(self) -> None:
        """Closes the pool, terminating it when queries do not finish in time."""
        try:
            await asyncio.wait_for(self._pool.close(), timeout=self._timeout_s)
        except TimeoutError:
            self._pool.terminate()

    @asynccontextmanager
    async def connection(self, what: str) -> AsyncIterator[asyncpg.Connection]:
        """A pooled connection; failures to reach the database become :class:`Unavailable`.

        Args:
            what: What the caller is doing, for the message and the log.
        """
        try:
            async with asyncio.timeout(self._timeout_s), self._pool.acquire() as conn:
                yield conn
        except ServiceError:
            raise
        except TimeoutError as exc:
            log.warning("database timed out while trying to %s", what)
            raise Unavailable(f"the database did not answer in time ({what}); try again shortly") from exc
        except UNAVAILABLE_ERRORS as exc:
            log.warning("database unavailable while trying to %s: %r", what, exc)
            raise Unavailable(f"the database is unavailable ({what}); try again shortly") from exc


def timestamp(value: datetime | None) -> Timestamp | None:
    """A protobuf Timestamp, or None for a NULL column (so the field stays unset)."""
    if value is None:
        return None
    ts = Timestamp()
    ts.FromDatetime(value)
    return ts
