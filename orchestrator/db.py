"""PostgreSQL access: migrations, the item versions, sessions, answers and scores.

PostgreSQL is the interviewer's source of truth. Every operation is bounded by a
timeout, and a database that cannot be reached becomes :class:`common.errors.Unavailable`
instead of a hang or an internal error.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, NamedTuple

import asyncpg
from google.protobuf import json_format

from common.errors import FailedPrecondition, NotFound, ServiceError, Unavailable
from orchestrator.bank import Item, ItemVersion, item_from_content
from xlinterview.v1 import common_pb2

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"

# Advisory-lock keys ("xli" + purpose) so concurrent starts serialise instead of racing.
MIGRATION_LOCK = 0x786C_6900_0001
BANK_IMPORT_LOCK = 0x786C_6900_0002

# Migrations may rebuild tables; they get far more time than a request does.
MIGRATION_TIMEOUT_S = 300.0

STATUS_IN_PROGRESS = "in_progress"
STATUS_FINISHED = "finished"
REASON_TIME_LIMIT = "time_limit"

# Errors that mean "the database cannot be reached or is going away", not "the query is wrong".
UNAVAILABLE_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.exceptions.OperatorInterventionError,
    asyncpg.exceptions.InsufficientResourcesError,
)
CONNECT_ERRORS: tuple[type[BaseException], ...] = (TimeoutError, *UNAVAILABLE_ERRORS)


class TimeLimitReached(FailedPrecondition):
    """An answer arrived after the deadline; the refusing call finished the session."""


class ItemRef(NamedTuple):
    """Names one item version, as asked at one position of a session.

    Attributes:
        item_id: The item.
        version: Its version.
        follow_up_of: For a follow-up question: the 0-based position of the answer it
            follows up (an answer to the same item); None for an item the engine chose.
        criterion: For a follow-up: the name of the rubric criterion that answer missed.
    """

    item_id: str
    version: int
    follow_up_of: int | None = None
    criterion: str = ""

    @property
    def is_follow_up(self) -> bool:
        return self.follow_up_of is not None

    @property
    def version_ref(self) -> ItemRef:
        """Just the item version, without what this position asks about it."""
        return ItemRef(self.item_id, self.version)


def item_entry(ref: ItemRef) -> dict[str, Any]:
    """``ref`` as an entry of ``sessions.items`` (follow-up fields only on follow-ups,
    so entries of sessions stored before follow-ups existed read back unchanged)."""
    entry: dict[str, Any] = {"item_id": ref.item_id, "version": ref.version}
    if ref.follow_up_of is not None:
        entry["follow_up_of"] = ref.follow_up_of
        entry["criterion"] = ref.criterion
    return entry


def item_from_entry(entry: dict[str, Any]) -> ItemRef:
    """Inverse of :func:`item_entry`."""
    follow_up_of = entry.get("follow_up_of")
    return ItemRef(
        str(entry["item_id"]),
        int(entry["version"]),
        None if follow_up_of is None else int(follow_up_of),
        str(entry.get("criterion", "")),
    )


@dataclass(frozen=True)
class SessionRow:
    """A ``sessions`` row; ``items`` is the interview's ordered item versions."""

    session_id: uuid.UUID
    candidate_name: str
    status: str
    items: tuple[ItemRef, ...]
    position: int
    started_at: datetime
    finished_at: datetime | None
    cat_seed: int = 0
    ineligible: tuple[str, ...] = ()
    deadline: datetime | None = None
    max_items: int = 0
    stop_reason: str | None = None

    @property
    def finished(self) -> bool:
        return self.status == STATUS_FINISHED

    @property
    def awaiting_selection(self) -> bool:
        """True when the last question is answered and the next is not chosen yet."""
        return not self.finished and self.position >= len(self.items)


@dataclass(frozen=True)
class AnswerRow:
    """An ``answers`` row."""

    answer_id: uuid.UUID
    session_id: uuid.UUID
    item_id: str
    item_version: int
    position: int
    answer: str
    idempotency_key: str
    submitted_at: datetime


@dataclass(frozen=True)
class SubmitResult:
    """What :meth:`Database.submit_answer` did.

    Attributes:
        answer: The stored answer (the earlier one when ``replayed``).
        session: The session after the answer was stored.
        replayed: True when the idempotency key had been used: nothing was stored.
    """

    answer: AnswerRow
    session: SessionRow
    replayed: bool


@dataclass(frozen=True)
class Turn:
    """An answer with its newest score; ``score`` is None while it waits to be scored."""

    answer: AnswerRow
    score: common_pb2.Score | None


@dataclass(frozen=True)
class StoredScore:
    """What :meth:`Database.store_first_score` stored, and the session's turns with it.

    Attributes:
        score: The answer's score: the one given, or the one stored first by another call.
        turns: The session's answers in order, each with its newest score (this answer's
            is ``score``).
    """

    score: common_pb2.Score
    turns: list[Turn]


@dataclass(frozen=True)
class ItemCalibration:
    """An ``item_calibrations`` row: IRT parameters of one item version estimated from
    the stored answers.

    Attributes:
        ref: The item version.
        discrimination: The discrimination a.
        thresholds: Ascending category boundaries b (one for a right/wrong item).
        responses: Scored responses the estimate is based on.
        method: How it was estimated, e.g. ``mml-em``.
        created_at: When it was stored; None for one not stored yet.
    """

    ref: ItemRef
    discrimination: float
    thresholds: tuple[float, ...]
    responses: int
    method: str
    created_at: datetime | None = None


@dataclass(frozen=True)
class ScoredSession:
    """What calibration reads of a finished session.

    Attributes:
        items: Its asked items in order (``SessionRow.items``).
        scores: The newest score value of each scored answer, by 0-based position.
    """

    items: tuple[ItemRef, ...]
    scores: dict[int, float]


def score_to_json(score: common_pb2.Score) -> dict[str, Any]:
    """The Score message in the protobuf JSON mapping, as stored in ``scores.score``."""
    return json_format.MessageToDict(
        score, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )


def score_from_json(data: dict[str, Any]) -> common_pb2.Score:
    """Inverse of :func:`score_to_json`; fields added to Score later are ignored, not fatal."""
    return json_format.ParseDict(data, common_pb2.Score(), ignore_unknown_fields=True)


_ANSWER_COLUMNS = "answer_id, session_id, item_id, item_version, position, answer, idempotency_key, submitted_at"

# A stored score as (score_pb, score). The jsonb is only fetched for rows stored before
# migration 0013, which have no serialised copy; decoding it is the slow path.
_SCORE_COLUMNS = "score_pb, CASE WHEN score_pb IS NULL THEN score END AS score"
# The newest score of the answer ``{answer}``: its current one.
_NEWEST_SCORE_OF = f"SELECT {_SCORE_COLUMNS} FROM scores WHERE answer_id = {{answer}} ORDER BY score_id DESC LIMIT 1"
# An answer's first score: what its submission answered, and so what a retry with the same
# idempotency key returns, whatever a reviewer graded since (a later score row).
_FIRST_SCORE = f"SELECT {_SCORE_COLUMNS} FROM scores WHERE answer_id = $1 ORDER BY score_id LIMIT 1"

# The answers of session {session}, in order, each with its newest score (``score_pb``, ``score``).
_TURNS_OF = (
    f"SELECT {', '.join('a.' + c for c in _ANSWER_COLUMNS.split(', '))}, s.score_pb, s.score"
    " FROM answers a"
    f" LEFT JOIN LATERAL ({_NEWEST_SCORE_OF.format(answer='a.answer_id')}) s ON true"
    " WHERE a.session_id = {session} ORDER BY a.position"
)

# Claims answer $1's first score and stores it with its audit event, and reads the session's
# turns, in one statement: every row says whether this call stored the score (``claimed``).
# A concurrent claimant waits on the primary key until the first commits, then claims
# nothing (see migration 0016). The turns are read in the statement's snapshot, which does
# not include what the statement itself writes, so the new score is added by the caller.
_STORE_FIRST_SCORE = (
    "WITH claimed AS (INSERT INTO first_scores (answer_id) VALUES ($1) ON CONFLICT DO NOTHING"
    " RETURNING answer_id),"
    " stored AS (INSERT INTO scores (answer_id, value, confidence, score, score_pb, model_name,"
    " model_version, backend) SELECT answer_id, $2::float8, $3::float8, $4::jsonb, $5::bytea, $6::text,"
    " $7::text, $8::text FROM claimed),"
    " logged AS (INSERT INTO audit_log (session_id, event, detail)"
    " SELECT $9::uuid, 'answer_scored', $10::jsonb FROM claimed),"
    f" turns AS ({_TURNS_OF.format(session='$9::uuid')})"
    " SELECT turns.*, (SELECT count(*) FROM claimed) = 1 AS claimed"
    " FROM (SELECT true) one LEFT JOIN turns ON true ORDER BY turns.position"
)


def _stored_score(row: asyncpg.Record | None) -> common_pb2.Score | None:
    """The Score of a row with ``score_pb`` and ``score`` columns (see ``_NEWEST_SCORE_OF``).

    Args:
        row: The row, or None when the answer has no score.

    Returns:
        The message (from the serialised copy when there is one), or None without a score.
    """
    if row is None:
        return None
    return decode_score(row["score_pb"], row["score"])


def decode_score(score_pb: bytes | None, score: dict[str, Any] | None) -> common_pb2.Score | None:
    """A stored Score from its two columns (``scores.score_pb`` and ``scores.score``).

    Args:
        score_pb: The serialised message; NULL on rows stored before migration 0013.
        score: The protobuf JSON mapping; only needed when ``score_pb`` is NULL.

    Returns:
        The message (from the serialised copy when there is one), or None when both
        are NULL (no score).
    """
    if score_pb is not None:
        # Like ignore_unknown_fields on the JSON path: fields added to Score later are kept
        # as unknown fields, not fatal.
        return common_pb2.Score.FromString(score_pb)
    return None if score is None else score_from_json(score)


async def init_connection(conn: asyncpg.Connection) -> None:
    await conn.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


async def keep_session_state(conn: asyncpg.Connection) -> None:
    """The pool's reset on release: nothing to send.

    asyncpg's default reset sends ``pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *;
    RESET ALL`` on every release, a round trip per operation (a submitted answer
    takes several). This code never leaves session state behind: its advisory locks
    are transaction-scoped, it sets no settings, holds no cursors outside
    transactions and never listens. An open transaction is still rolled back by
    asyncpg before this runs.
    """


def _session(row: asyncpg.Record) -> SessionRow:
    return SessionRow(
        session_id=row["session_id"],
        candidate_name=row["candidate_name"],
        status=row["status"],
        items=tuple(item_from_entry(entry) for entry in row["items"]),
        position=row["position"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        cat_seed=row["cat_seed"],
        ineligible=tuple(row["ineligible"]),
        deadline=row["deadline"],
        max_items=row["max_items"],
        stop_reason=row["stop_reason"],
    )


def _answer(row: asyncpg.Record, prefix: str = "") -> AnswerRow:
    return AnswerRow(
        answer_id=row[prefix + "answer_id"],
        session_id=row[prefix + "session_id"],
        item_id=row[prefix + "item_id"],
        item_version=row[prefix + "item_version"],
        position=row[prefix + "position"],
        answer=row[prefix + "answer"],
        idempotency_key=row[prefix + "idempotency_key"],
        submitted_at=row[prefix + "submitted_at"],
    )


def _answer_submitted(answer_id: uuid.UUID, item_id: str, position: int) -> dict[str, Any]:
    """The audit detail of a stored answer."""
    return {"answer_id": str(answer_id), "item_id": item_id, "position": position}


_SESSION_COLUMNS = (
    "session_id, candidate_name, status, items, position, started_at, finished_at,"
    " cat_seed, ineligible, deadline, max_items, stop_reason"
)
# A session is waiting for its next question when its last asked item is answered.
_AWAITING = f"status <> '{STATUS_FINISHED}' AND position >= jsonb_array_length(items)"

# The session, whether its time is up, and the answer already stored under the key.
_SUBMIT_READ = (
    f"SELECT {', '.join('s.' + c for c in _SESSION_COLUMNS.split(', '))},"
    " s.deadline IS NOT NULL AND now() > s.deadline AS expired,"
    + ", ".join(f"e.{c} AS earlier_{c}" for c in _ANSWER_COLUMNS.split(", "))
    + " FROM sessions s LEFT JOIN answers e ON e.session_id = s.session_id AND e.idempotency_key = $2"
    " WHERE s.session_id = $1"
)

# Stores an answer at the session's position and moves the session on, in one
# statement and only while the session is as it was read: at that position, in
# progress, its question chosen, in time. Its WHERE is checked again on the locked row,
# so a concurrent answer makes this store nothing rather than a second answer.
_APPEND_ANSWER_IF_UNCHANGED = (
    "WITH moved AS (UPDATE sessions SET position = position + 1"
    f" WHERE session_id = $1 AND position = $2 AND status <> '{STATUS_FINISHED}'"
    " AND position < jsonb_array_length(items) AND (deadline IS NULL OR now() <= deadline)"
    f" RETURNING {_SESSION_COLUMNS}),"
    " stored AS (INSERT INTO answers (answer_id, session_id, item_id, item_version, position, answer,"
    " idempotency_key) SELECT $3::uuid, session_id, $4::text, $5::int, $2, $6::text, $7::text FROM moved"
    " RETURNING submitted_at),"
    " logged AS (INSERT INTO audit_log (session_id, event, detail)"
    " SELECT session_id, 'answer_submitted', $8::jsonb FROM moved)"
    " SELECT moved.*, stored.submitted_at FROM moved, stored"
)

# Appends the next item to a session still waiting for the question after answer $2.
_ASK_NEXT = (
    f"UPDATE sessions SET items = items || $3::jsonb WHERE session_id = $1 AND position = $2 AND {_AWAITING}"
    f" RETURNING {_SESSION_COLUMNS}"
)

# Finishes a session still waiting for the question after answer $2, with its audit event.
_FINISH_AWAITING = (
    "WITH finished AS (UPDATE sessions SET status = $3, finished_at = now(), stop_reason = $4"
    f" WHERE session_id = $1 AND position = $2 AND {_AWAITING} RETURNING {_SESSION_COLUMNS}),"
    " logged AS (INSERT INTO audit_log (session_id, event, detail)"
    " SELECT session_id, 'session_finished', $5::jsonb FROM finished)"
    " SELECT * FROM finished"
)


def discover_migrations(directory: Path = MIGRATIONS_DIR) -> list[tuple[int, str, Path]]:
    """The ``NNNN_name.sql`` files of ``directory`` as (version, name, path), in version order.

    Raises:
        ValueError: When a file name has no version or two files share one.
    """
    found: dict[int, tuple[int, str, Path]] = {}
    for path in sorted(directory.glob("*.sql")):
        match = re.fullmatch(r"(\d+)_([A-Za-z0-9_]+)\.sql", path.name)
        if match is None:
            raise ValueError(f"{path}: migration files are named NNNN_description.sql")
        version = int(match.group(1))
        if version in found:
            raise ValueError(f"{path}: version {version} is also used by {found[version][2]}")
        found[version] = (version, match.group(2), path)
    return [found[v] for v in sorted(found)]


class Database:
    """The orchestrator's tables behind an asyncpg pool.

    Args:
        pool: An open pool whose connections decode ``jsonb`` to Python objects
            (as :meth:`connect` sets up).
        timeout_s: Upper bound for one operation, including waiting for a connection.
    """

    def __init__(self, pool: asyncpg.Pool, timeout_s: float) -> None:
        self._pool = pool
        self._timeout_s = timeout_s

    @classmethod
    async def connect(
        cls,
        dsn: str,
        *,
        timeout_s: float = 5.0,
        min_size: int = 1,
        max_size: int = 10,
        startup_timeout_s: float = 0.0,
    ) -> Database:
        """Opens a pool, retrying until ``startup_timeout_s`` while PostgreSQL is starting.

        Raises:
            Unavailable: When PostgreSQL could not be reached in time.
        """
        deadline = time.monotonic() + startup_timeout_s
        delay = 0.2
        while True:
            try:
                pool = await asyncio.wait_for(
                    asyncpg.create_pool(
                        dsn,
                        min_size=min_size,
                        max_size=max_size,
                        command_timeout=timeout_s,
                        timeout=timeout_s,
                        init=init_connection,
                        reset=keep_session_state,
                    ),
                    timeout=timeout_s * 2,
                )
                return cls(pool, timeout_s)
            except CONNECT_ERRORS as exc:
                if time.monotonic() + delay > deadline:
                    raise Unavailable(f"cannot reach PostgreSQL: {exc or type(exc).__name__}") from exc
                log.warning("PostgreSQL not reachable yet (%s); retrying in %.1fs", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)

    async def close(self) -> None:
        """Closes the pool, waiting at most the operation timeout for queries in flight."""
        try:
            await asyncio.wait_for(self._pool.close(), timeout=self._timeout_s)
        except TimeoutError:
            self._pool.terminate()

    @asynccontextmanager
    async def _guard(self, what: str, timeout_s: float | None = None) -> AsyncIterator[None]:
        try:
            async with asyncio.timeout(timeout_s or self._timeout_s):
                yield
        except ServiceError:
            raise
        except TimeoutError as exc:
            log.warning("database timed out while trying to %s", what)
            raise Unavailable(f"the database did not answer in time ({what}); try again shortly") from exc
        except UNAVAILABLE_ERRORS as exc:
            log.warning("database unavailable while trying to %s: %r", what, exc)
            raise Unavailable(f"the database is unavailable ({what}); try again shortly") from exc

    @asynccontextmanager
    async def _connection(self, what: str, timeout_s: float | None = None) -> AsyncIterator[asyncpg.Connection]:
        async with self._guard(what, timeout_s), self._pool.acquire() as conn:
            yield conn

    # -- schema -------------------------------------------------------------------------

    async def migrate(self, directory: Path = MIGRATIONS_DIR) -> list[int]:
        """Applies the pending migrations of ``directory`` in version order.

        All pending migrations run in one transaction under an advisory lock, so two
        processes starting together apply each migration once and a failing
        migration leaves the schema as it was.

        Returns:
            The versions applied by this call (empty when the schema was current).
        """
        migrations = discover_migrations(directory)
        async with self._connection("apply migrations", MIGRATION_TIMEOUT_S) as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK, timeout=MIGRATION_TIMEOUT_S)
            await conn.execute(
                """
                CREATE TABLE IF NOT EXISTS schema_migrations (
                    version    int         PRIMARY KEY,
                    name       text        NOT NULL,
                    applied_at timestamptz NOT NULL DEFAULT now()
                )
                """
            )
            done = {r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")}
            applied = []
            for version, name, path in migrations:
                if version in done:
                    continue
                log.info("applying migration %04d_%s", version, name)
                await conn.execute(path.read_text(encoding="utf-8"), timeout=MIGRATION_TIMEOUT_S)
                await conn.execute("INSERT INTO schema_migrations (version, name) VALUES ($1, $2)", version, name)
                applied.append(version)
            unknown = sorted(done - {m[0] for m in migrations})
            if unknown:
                # A newer release migrated this database; old code keeps running on it.
                log.warning("database has migrations this code does not know: %s", unknown)
        return applied

    # -- items --------------------------------------------------------------------------

    async def import_items(self, items: Sequence[Item]) -> list[ItemVersion]:
        """Stores the bank's items, creating a new version only for changed items.

        Returns:
            The current version of each item, in the order given.
        """
        result = []
        async with self._connection("import the question bank", MIGRATION_TIMEOUT_S) as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", BANK_IMPORT_LOCK)
            for item in items:
                latest = await conn.fetchrow(
                    "SELECT version, kind, skill_area, prompt, spec, difficulty FROM items"
                    " WHERE item_id = $1 ORDER BY version DESC LIMIT 1",
                    item.id,
                )
                content = item.content()
                if latest is not None:
                    stored = item_from_content(
                        item.id,
                        latest["kind"],
                        latest["skill_area"],
                        latest["prompt"],
                        latest["spec"],
                        latest["difficulty"],
                    )
                    # Compare after the same normalisation so a formatting-only edit is no change.
                    if stored.content() == content:
                        result.append(ItemVersion(item, latest["version"]))
                        continue
                version = 1 if latest is None else latest["version"] + 1
                await conn.execute(
                    "INSERT INTO items (item_id, version, kind, skill_area, prompt, spec, difficulty)"
                    " VALUES ($1, $2, $3, $4, $5, $6, $7)",
                    item.id,
                    version,
                    content["kind"],
                    content["skill_area"],
                    content["prompt"],
                    content["spec"],
                    content["difficulty"],
                )
                await conn.execute(
                    "INSERT INTO audit_log (event, detail) VALUES ('item_version_created', $1)",
                    {"item_id": item.id, "version": version},
                )
                log.info("stored item %s version %d", item.id, version)
                result.append(ItemVersion(item, version))
        return result

    async def item_versions(self) -> list[ItemVersion]:
        """Every stored item version, retired ones included, by item id and version."""
        async with self._connection("read the item versions", MIGRATION_TIMEOUT_S) as conn:
            rows = await conn.fetch(
                "SELECT item_id, version, kind, skill_area, prompt, spec, difficulty FROM items"
                " ORDER BY item_id, version"
            )
        return [
            ItemVersion(
                item_from_content(r["item_id"], r["kind"], r["skill_area"], r["prompt"], r["spec"], r["difficulty"]),
                r["version"],
            )
            for r in rows
        ]

    async def get_item(self, ref: ItemRef) -> ItemVersion | None:
        """One stored item version, or None."""
        async with self._connection("read an item") as conn:
            row = await conn.fetchrow(
                "SELECT kind, skill_area, prompt, spec, difficulty FROM items WHERE item_id = $1 AND version = $2",
                ref.item_id,
                ref.version,
            )
        if row is None:
            return None
        item = item_from_content(
            ref.item_id, row["kind"], row["skill_area"], row["prompt"], row["spec"], row["difficulty"]
        )
        return ItemVersion(item, ref.version)

    # -- sessions -----------------------------------------------------------------------

    async def create_session(
        self,
        session_id: uuid.UUID,
        candidate_name: str,
        first_item: ItemRef,
        *,
        cat_seed: int,
        ineligible: Sequence[str],
        time_limit_s: float,
        extra_time_percent: int,
        max_items: int,
    ) -> SessionRow:
        """Stores a new in-progress session whose first question is ``first_item``.

        The deadline is set by the database clock, the one every later check uses.
        """
        async with self._connection("start a session") as conn:
            row = await conn.fetchrow(
                f"WITH started AS (INSERT INTO sessions (session_id, candidate_name, status, items, position,"
                f" cat_seed, ineligible, deadline, extra_time_percent, max_items)"
                f" VALUES ($1, $2, $3, $4, 0, $5, $6, now() + make_interval(secs => $7), $8, $9)"
                f" RETURNING {_SESSION_COLUMNS}),"
                " logged AS (INSERT INTO audit_log (session_id, event, detail)"
                " SELECT session_id, 'session_started', $10::jsonb FROM started)"
                " SELECT * FROM started",
                session_id,
                candidate_name,
                STATUS_IN_PROGRESS,
                [item_entry(first_item)],
                cat_seed,
                list(ineligible),
                time_limit_s * (1 + extra_time_percent / 100),
                extra_time_percent,
                max_items,
                {"max_items": max_items, "extra_time_percent": extra_time_percent},
            )
        return _session(row)

    async def get_session(self, session_id: uuid.UUID) -> SessionRow | None:
        """The session, or None when there is none with this id."""
        async with self._connection("read a session") as conn:
            row = await conn.fetchrow(f"SELECT {_SESSION_COLUMNS} FROM sessions WHERE session_id = $1", session_id)
        return None if row is None else _session(row)

    async def finish_session(self, session_id: uuid.UUID, reason: str = "finish_requested") -> SessionRow:
        """Marks the session finished for ``reason``; a finished session is returned unchanged.

        Raises:
            NotFound: When there is no such session.
        """
        async with self._connection("finish a session") as conn, conn.transaction():
            row = await conn.fetchrow(
                f"UPDATE sessions SET status = $2, finished_at = now(), stop_reason = $3"
                f" WHERE session_id = $1 AND status <> $2 RETURNING {_SESSION_COLUMNS}",
                session_id,
                STATUS_FINISHED,
                reason,
            )
            if row is not None:
                await conn.execute(
                    "INSERT INTO audit_log (session_id, event, detail) VALUES ($1, 'session_finished', $2)",
                    session_id,
                    {"reason": reason, "answered": row["position"]},
                )
            else:
                row = await conn.fetchrow(
                    f"SELECT {_SESSION_COLUMNS} FROM sessions WHERE session_id = $1", session_id
                )
                if row is None:
                    raise NotFound(f"no interview session {session_id}")
        return _session(row)

    # -- answers and scores -------------------------------------------------------------

    async def submit_answer(
        self,
        session_id: uuid.UUID,
        idempotency_key: str,
        answer: str,
        check: Callable[[SessionRow], Awaitable[None]],
    ) -> SubmitResult:
        """Stores an answer to the current question and advances the session, atomically.

        The session row is locked first, so concurrent submissions to one session are
        serialised: a repeated key always finds the first answer, and two different
        answers can never take the same position.

        Args:
            session_id: The session answered.
            idempotency_key: Client key; when already used, nothing is stored and the
                earlier answer is returned with ``replayed`` set.
            answer: The answer text as it will be scored.
            check: Awaited with the locked, unchanged session before anything is
                stored; raise a :class:`ServiceError` to refuse the answer.

        Raises:
            NotFound: When there is no such session.
        """
        async with self._connection("store an answer") as conn:
            stored = await self._submit_unlocked(conn, session_id, idempotency_key, answer, check)
        return stored or await self._submit_locked(session_id, idempotency_key, answer, check)

    async def _submit_unlocked(
        self,
        conn: asyncpg.Connection,
        session_id: uuid.UUID,
        idempotency_key: str,
        answer: str,
        check: Callable[[SessionRow], Awaitable[None]],
    ) -> SubmitResult | None:
        """The common case in two round trips: read, check, then one statement that
        stores the answer only if the session is still as read.

        Returns None (nothing stored) whenever the common case does not apply: the
        session moved on between the read and the write, its time is up, or its next
        question is still being chosen; :meth:`_submit_locked` then decides.
        """
        row = await conn.fetchrow(_SUBMIT_READ, session_id, idempotency_key)
        if row is None:
            raise NotFound(f"no interview session {session_id}")
        session = _session(row)
        if row["earlier_answer_id"] is not None:
            return SubmitResult(_answer(row, prefix="earlier_"), session, replayed=True)
        if session.finished:
            raise FailedPrecondition("the interview is finished; no more answers are accepted")
        if row["expired"] or session.awaiting_selection:
            return None
        await check(session)
        ref = session.items[session.position]
        answer_id = uuid.uuid4()
        written = await conn.fetchrow(
            _APPEND_ANSWER_IF_UNCHANGED,
            session_id,
            session.position,
            answer_id,
            ref.item_id,
            ref.version,
            answer,
            idempotency_key,
            _answer_submitted(answer_id, ref.item_id, session.position),
        )
        if written is None:
            return None
        stored = AnswerRow(
            answer_id, session_id, ref.item_id, ref.version, session.position, answer, idempotency_key,
            written["submitted_at"],
        )
        return SubmitResult(stored, _session(written), replayed=False)

    async def _submit_locked(
        self,
        session_id: uuid.UUID,
        idempotency_key: str,
        answer: str,
        check: Callable[[SessionRow], Awaitable[None]],
    ) -> SubmitResult:
        """:meth:`submit_answer` with the session row locked throughout: every case."""
        async with self._connection("store an answer") as conn, conn.transaction():
            row = await conn.fetchrow(
                f"SELECT {_SESSION_COLUMNS} FROM sessions WHERE session_id = $1 FOR UPDATE", session_id
            )
            if row is None:
                raise NotFound(f"no interview session {session_id}")
            session = _session(row)
            earlier = await conn.fetchrow(
                f"SELECT {_ANSWER_COLUMNS} FROM answers WHERE session_id = $1 AND idempotency_key = $2",
                session_id,
                idempotency_key,
            )
            if earlier is not None:
                return SubmitResult(_answer(earlier), session, replayed=True)
            if session.finished:
                raise FailedPrecondition("the interview is finished; no more answers are accepted")
            expired = session.deadline is not None and await conn.fetchval("SELECT now() > $1", session.deadline)
            if expired:
                await self._finish_locked(conn, session_id, REASON_TIME_LIMIT, session.position)
            else:
                if session.awaiting_selection:
                    raise FailedPrecondition(
                        "the next question is still being chosen; fetch the current question and answer that"
                    )
                await check(session)
                answer_row, row = await self._append_answer(conn, session, answer, idempotency_key)
        if expired:
            # Raised after the commit, so the session is stored as finished by the time limit.
            raise TimeLimitReached("the interview's time limit has passed; no more answers are accepted")
        return SubmitResult(_answer(answer_row), _session(row), replayed=False)

    async def _append_answer(
        self, conn: asyncpg.Connection, session: SessionRow, answer: str, idempotency_key: str
    ) -> tuple[asyncpg.Record, asyncpg.Record]:
        session_id = session.session_id
        ref = session.items[session.position]
        answer_row = await conn.fetchrow(
            f"INSERT INTO answers (answer_id, session_id, item_id, item_version, position, answer,"
            f" idempotency_key) VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING {_ANSWER_COLUMNS}",
            uuid.uuid4(),
            session_id,
            ref.item_id,
            ref.version,
            session.position,
            answer,
            idempotency_key,
        )
        # The session stays in progress: the engine decides after scoring whether to
        # ask another question or finish (see advance()).
        row = await conn.fetchrow(
            f"UPDATE sessions SET position = $2 WHERE session_id = $1 RETURNING {_SESSION_COLUMNS}",
            session_id,
            session.position + 1,
        )
        await conn.execute(
            "INSERT INTO audit_log (session_id, event, detail) VALUES ($1, 'answer_submitted', $2)",
            session_id,
            _answer_submitted(answer_row["answer_id"], ref.item_id, session.position),
        )
        return answer_row, row

    async def _finish_locked(
        self, conn: asyncpg.Connection, session_id: uuid.UUID, reason: str | None, answered: int
    ) -> asyncpg.Record:
        row = await conn.fetchrow(
            f"UPDATE sessions SET status = $2, finished_at = now(), stop_reason = $3"
            f" WHERE session_id = $1 RETURNING {_SESSION_COLUMNS}",
            session_id,
            STATUS_FINISHED,
            reason,
        )
        await conn.execute(
            "INSERT INTO audit_log (session_id, event, detail) VALUES ($1, 'session_finished', $2)",
            session_id,
            {"reason": reason, "answered": answered},
        )
        return row

    async def advance(
        self, session_id: uuid.UUID, answered: int, next_item: ItemRef | None, stop_reason: str | None
    ) -> tuple[SessionRow, bool]:
        """Asks ``next_item`` next, or finishes the session for ``stop_reason``.

        Applies only while the session still waits for the question after its
        ``answered``-th answer; otherwise another request decided first and the
        session is returned unchanged, so a decision is never made twice.

        Returns:
            The session, and whether this call changed it.

        Raises:
            NotFound: When there is no such session.
        """
        # One statement each way: its WHERE is checked again on the locked row, so
        # when two requests decide at once exactly one of them applies.
        async with self._connection("choose the next question") as conn:
            if next_item is not None:
                row = await conn.fetchrow(_ASK_NEXT, session_id, answered, [item_entry(next_item)])
            else:
                row = await conn.fetchrow(
                    _FINISH_AWAITING, session_id, answered, STATUS_FINISHED, stop_reason,
                    {"reason": stop_reason, "answered": answered},
                )
            if row is not None:
                return _session(row), True
            row = await conn.fetchrow(f"SELECT {_SESSION_COLUMNS} FROM sessions WHERE session_id = $1", session_id)
        if row is None:
            raise NotFound(f"no interview session {session_id}")
        return _session(row), False

    async def store_result(self, session_id: uuid.UUID, result: Any) -> None:
        """Appends a result (an ``orchestrator_pb2.Result``) unless the newest one is equal."""
        data = json_format.MessageToDict(
            result, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
        )
        async with self._connection("store a result") as conn, conn.transaction():
            await conn.execute(
                "SELECT pg_advisory_xact_lock(hashtextextended('result:' || $1::uuid::text, 0))", session_id
            )
            latest = await conn.fetchval(
                "SELECT result FROM results WHERE session_id = $1 ORDER BY result_id DESC LIMIT 1", session_id
            )
            if latest == data:
                return
            await conn.execute(
                "INSERT INTO results (session_id, ability, standard_error, answers_scored, result)"
                " VALUES ($1, $2, $3, $4, $5)",
                session_id,
                result.ability,
                result.standard_error,
                result.answers_scored,
                data,
            )

    async def latest_result(self, session_id: uuid.UUID) -> dict[str, Any] | None:
        """The newest stored result (protobuf JSON mapping), or None."""
        async with self._connection("read a result") as conn:
            data: dict[str, Any] | None = await conn.fetchval(
                "SELECT result FROM results WHERE session_id = $1 ORDER BY result_id DESC LIMIT 1", session_id
            )
        return data

    async def exposure_counts(self) -> tuple[int, dict[str, int], dict[str, int]]:
        """Over finished sessions: their number, and per item id how many made it
        ineligible and how many asked it (the exposure control's history)."""
        async with self._connection("read exposure counts", MIGRATION_TIMEOUT_S) as conn:
            sessions = await conn.fetchval("SELECT count(*) FROM sessions WHERE status = $1", STATUS_FINISHED)
            ineligible = await conn.fetch(
                "SELECT e.item_id, count(*) AS n FROM sessions s,"
                " jsonb_array_elements_text(s.ineligible) AS e(item_id) WHERE s.status = $1 GROUP BY 1",
                STATUS_FINISHED,
            )
            asked = await conn.fetch(
                "SELECT e->>'item_id' AS item_id, count(*) AS n FROM sessions s,"
                # A follow-up asks no new item: the item was counted when first asked.
                " jsonb_array_elements(s.items) AS e WHERE s.status = $1 AND NOT e ? 'follow_up_of' GROUP BY 1",
                STATUS_FINISHED,
            )
        return (
            sessions,
            {r["item_id"]: r["n"] for r in ineligible},
            {r["item_id"]: r["n"] for r in asked},
        )

    async def scored_sessions(self) -> list[ScoredSession]:
        """Every finished session's asked items and newest score values (calibration's input)."""
        async with self._connection("read the scored sessions", MIGRATION_TIMEOUT_S) as conn:
            rows = await conn.fetch(
                "SELECT s.items, array_agg(a.position) FILTER (WHERE sc.value IS NOT NULL) AS positions,"
                " array_agg(sc.value) FILTER (WHERE sc.value IS NOT NULL) AS values"
                " FROM sessions s JOIN answers a ON a.session_id = s.session_id"
                " LEFT JOIN LATERAL (SELECT value FROM scores WHERE answer_id = a.answer_id"
                " ORDER BY score_id DESC LIMIT 1) sc ON true"
                " WHERE s.status = $1 GROUP BY s.session_id ORDER BY s.session_id",
                STATUS_FINISHED,
            )
        return [
            ScoredSession(
                tuple(item_from_entry(entry) for entry in r["items"]),
                dict(zip(r["positions"] or (), r["values"] or (), strict=True)),
            )
            for r in rows
        ]

    async def latest_calibrations(self) -> dict[ItemRef, ItemCalibration]:
        """The newest calibration of every calibrated item version."""
        async with self._connection("read the item calibrations", MIGRATION_TIMEOUT_S) as conn:
            rows = await conn.fetch(
                "SELECT DISTINCT ON (item_id, version) item_id, version, discrimination, thresholds,"
                " responses, method, created_at FROM item_calibrations"
                " ORDER BY item_id, version, calibration_id DESC"
            )
        return {
            ItemRef(r["item_id"], r["version"]): ItemCalibration(
                ItemRef(r["item_id"], r["version"]),
                r["discrimination"],
                tuple(r["thresholds"]),
                r["responses"],
                r["method"],
                r["created_at"],
            )
            for r in rows
        }

    async def store_calibrations(self, calibrations: Sequence[ItemCalibration]) -> None:
        """Appends ``calibrations`` in one transaction; each becomes its version's current one."""
        async with self._connection("store item calibrations", MIGRATION_TIMEOUT_S) as conn, conn.transaction():
            await conn.executemany(
                "INSERT INTO item_calibrations (item_id, version, discrimination, thresholds, responses, method)"
                " VALUES ($1, $2, $3, $4, $5, $6)",
                [
                    (c.ref.item_id, c.ref.version, c.discrimination, list(c.thresholds), c.responses, c.method)
                    for c in calibrations
                ],
            )
            await conn.execute(
                "INSERT INTO audit_log (event, detail) VALUES ('items_calibrated', $1)",
                {"items": len(calibrations), "methods": sorted({c.method for c in calibrations})},
            )

    async def first_score(self, answer_id: uuid.UUID) -> common_pb2.Score | None:
        """The first stored score of an answer (the scorer's, never a reviewer's later
        grade), or None when it was never scored."""
        async with self._connection("read a score") as conn:
            row = await conn.fetchrow(_FIRST_SCORE, answer_id)
        return _stored_score(row)

    async def store_first_score(
        self, session_id: uuid.UUID, answer_id: uuid.UUID, score: common_pb2.Score
    ) -> StoredScore:
        """Stores ``score`` unless the answer already has one; returns the stored score
        and the session's turns with it.

        Two retries that score the same answer at once must not leave two different
        grades behind, so the first one stored wins and the other is discarded. The
        turns come in the same round trip: choosing the next question needs them next.
        """
        provenance = score.provenance
        async with self._connection("store a score") as conn:
            rows = await conn.fetch(
                _STORE_FIRST_SCORE,
                answer_id,
                score.value,
                score.confidence,
                score_to_json(score),
                score.SerializeToString(),
                provenance.model_name,
                provenance.model_version,
                provenance.backend,
                session_id,
                {"answer_id": str(answer_id), "value": score.value, "backend": provenance.backend},
            )
            # The first row exists even for a session without answers (only a hand-edited database).
            if rows[0]["claimed"]:
                stored: common_pb2.Score | None = score
            else:
                # The first score may have committed after this statement's snapshot was taken.
                stored = _stored_score(await conn.fetchrow(_FIRST_SCORE, answer_id))
        if stored is None:
            # Claimed but without a score: only a hand-edited database gets here.
            raise Unavailable(f"answer {answer_id} is marked scored but has no score")
        turns = [
            Turn(_answer(row), stored if row["answer_id"] == answer_id else _stored_score(row))
            for row in rows
            if row["answer_id"] is not None
        ]
        return StoredScore(stored, turns)

    async def unscored_answers(self, older_than_s: float, within_s: float, limit: int) -> list[AnswerRow]:
        """Answers that have no score yet, oldest first.

        Args:
            older_than_s: Leave out answers younger than this: their own request
                may still be scoring them.
            within_s: Leave out answers older than this (a bound for the sweep's cost).
            limit: At most this many.
        """
        async with self._connection("find unscored answers") as conn:
            rows = await conn.fetch(
                f"SELECT {_ANSWER_COLUMNS} FROM answers a"
                " WHERE a.submitted_at < now() - make_interval(secs => $1)"
                " AND a.submitted_at > now() - make_interval(secs => $2)"
                " AND NOT EXISTS (SELECT 1 FROM scores s WHERE s.answer_id = a.answer_id)"
                " ORDER BY a.submitted_at LIMIT $3",
                older_than_s,
                within_s,
                limit,
            )
        return [_answer(r) for r in rows]

    async def turns(self, session_id: uuid.UUID) -> list[Turn]:
        """The session's answers in order, each with its newest score (if any)."""
        async with self._connection("read a session's answers") as conn:
            rows = await conn.fetch(_TURNS_OF.format(session="$1"), session_id)
        return [Turn(_answer(r), _stored_score(r)) for r in rows]

    async def audit(self, session_id: uuid.UUID | None, event: str, detail: dict[str, Any]) -> None:
        """Appends an audit event; a failure is logged, never raised (the event is not the work)."""
        try:
            async with self._connection("write the audit log") as conn:
                await conn.execute(
                    "INSERT INTO audit_log (session_id, event, detail) VALUES ($1, $2, $3)",
                    session_id,
                    event,
                    detail,
                )
        except Unavailable:
            log.warning("audit event %s for session %s was not stored", event, session_id)
