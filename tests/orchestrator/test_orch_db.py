"""Schema migrations, item versioning and append-only history on a real PostgreSQL."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import asyncpg
import pytest

from common.errors import FailedPrecondition
from orchestrator.bank import ItemVersion, load_bank, parse_item
from orchestrator.db import (
    MIGRATIONS_DIR,
    Database,
    ItemRef,
    SessionRow,
    TimeLimitReached,
    Turn,
    discover_migrations,
)
from orchestrator.settings import DEFAULT_BANK_DIR
from xlinterview.v1 import common_pb2

BANK = load_bank(DEFAULT_BANK_DIR)


async def test_migrations_are_serialised_and_applied_once(fresh_database: str) -> None:
    dbs = [await Database.connect(fresh_database, timeout_s=5) for _ in range(3)]
    try:
        results = await asyncio.gather(*(db.migrate() for db in dbs))
        versions = [v for v, _, _ in discover_migrations()]
        assert sorted(results, key=len) == [[], [], versions]
        assert await dbs[0].migrate() == []
    finally:
        for db in dbs:
            await db.close()
    conn = await asyncpg.connect(fresh_database)
    try:
        rows = await conn.fetch("SELECT version FROM schema_migrations ORDER BY version")
        assert [r["version"] for r in rows] == versions
        tables = {r["tablename"] for r in await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
        assert {"items", "sessions", "answers", "scores", "audit_log", "schema_migrations"} <= tables
    finally:
        await conn.close()


async def test_a_failing_migration_changes_nothing(fresh_database: str, tmp_path: Path) -> None:
    (tmp_path / "0001_ok.sql").write_text("CREATE TABLE first_table (id int);")
    (tmp_path / "0002_broken.sql").write_text("CREATE TABLE second_table (id int); SELECT no_such_function();")
    db = await Database.connect(fresh_database, timeout_s=5)
    try:
        with pytest.raises(asyncpg.UndefinedFunctionError):
            await db.migrate(tmp_path)
    finally:
        await db.close()
    conn = await asyncpg.connect(fresh_database)
    try:
        assert await conn.fetchval("SELECT to_regclass('first_table')") is None
        assert await conn.fetchval("SELECT to_regclass('schema_migrations')") is None
    finally:
        await conn.close()


def test_migration_files_need_a_version(tmp_path: Path) -> None:
    (tmp_path / "init.sql").write_text("SELECT 1;")
    with pytest.raises(ValueError, match="NNNN_description.sql"):
        discover_migrations(tmp_path)


async def test_items_are_versioned_immutably(fresh_database: str) -> None:
    db = await Database.connect(fresh_database, timeout_s=5)
    try:
        await db.migrate()
        first = await db.import_items(BANK)
        assert [v.version for v in first] == [1] * len(BANK)
        assert [v.version for v in await db.import_items(BANK)] == [1] * len(BANK)  # unchanged: no-op

        changed_data = BANK[0].model_dump()
        changed_data["prompt"] = BANK[0].prompt + " Use absolute ranges."
        changed = parse_item(changed_data)
        current = await db.import_items([changed, *BANK[1:]])
        assert [v.version for v in current] == [2] + [1] * (len(BANK) - 1)

        # Both versions stay readable: an answer keeps pointing at what was asked.
        old = await db.get_item(ItemRef(BANK[0].id, 1))
        new = await db.get_item(ItemRef(BANK[0].id, 2))
        assert old == ItemVersion(BANK[0], 1) and new == ItemVersion(changed, 2)
        assert await db.get_item(ItemRef(BANK[0].id, 3)) is None
        assert [v.version for v in await db.import_items([changed])] == [2]
        # Going back to the old text is a change too: history only grows.
        assert [v.version for v in await db.import_items([BANK[0]])] == [3]
    finally:
        await db.close()


async def test_history_tables_are_append_only(stub, scorer, pg: asyncpg.Connection) -> None:  # type: ignore[no-untyped-def]
    from xlinterview.v1 import orchestrator_pb2 as pb

    started = await stub.StartInterview(pb.StartInterviewRequest(candidate_name="History Check"))
    await stub.SubmitAnswer(
        pb.SubmitAnswerRequest(
            session_id=started.session.session_id,
            item_id=started.question.item_id,
            answer="=SUM(D2:D11)",
            idempotency_key="history",
        )
    )
    sid = uuid.UUID(started.session.session_id)
    answer_id = await pg.fetchval("SELECT answer_id FROM answers WHERE session_id = $1", sid)
    for statement, args in (
        ("UPDATE items SET prompt = 'x' WHERE item_id = $1", [started.question.item_id]),
        ("DELETE FROM items WHERE item_id = $1", [started.question.item_id]),
        ("UPDATE answers SET answer = 'x' WHERE answer_id = $1", [answer_id]),
        ("DELETE FROM answers WHERE answer_id = $1", [answer_id]),
        ("UPDATE scores SET value = 1 WHERE answer_id = $1", [answer_id]),
        ("DELETE FROM scores WHERE answer_id = $1", [answer_id]),
        ("DELETE FROM audit_log WHERE session_id = $1", [sid]),
    ):
        with pytest.raises(asyncpg.RestrictViolationError, match="append-only"):
            await pg.execute(statement, *args)


async def test_unique_constraints_back_the_idempotency_rules(orchestrator, stub, pg: asyncpg.Connection) -> None:  # type: ignore[no-untyped-def]
    from xlinterview.v1 import orchestrator_pb2 as pb

    started = await stub.StartInterview(pb.StartInterviewRequest(candidate_name="Constraint Check"))
    sid = uuid.UUID(started.session.session_id)
    insert = (
        "INSERT INTO answers (answer_id, session_id, item_id, item_version, position, answer, idempotency_key)"
        " VALUES ($1, $2, $3, 1, $4, 'a', $5)"
    )
    item_id = started.question.item_id
    await pg.execute(insert, uuid.uuid4(), sid, item_id, 0, "k1")
    with pytest.raises(asyncpg.UniqueViolationError):
        await pg.execute(insert, uuid.uuid4(), sid, item_id, 1, "k1")
    with pytest.raises(asyncpg.UniqueViolationError):
        await pg.execute(insert, uuid.uuid4(), sid, item_id, 0, "k2")


async def _session_on(db: Database, time_limit_s: float = 3600) -> uuid.UUID:
    """A new session whose first two questions are the bank's first two items."""
    await db.import_items(BANK[:2])
    session = await db.create_session(
        uuid.uuid4(), "Ada", ItemRef(BANK[0].id, 1), cat_seed=1, ineligible=(), time_limit_s=time_limit_s,
        extra_time_percent=0, max_items=5,
    )
    return session.session_id


async def test_an_answer_racing_another_is_decided_under_the_row_lock(fresh_database: str) -> None:
    # The common case reads the session, checks the answer, then stores it only if the
    # session is unchanged. Here another answer lands between that read and the write:
    # the write must store nothing, and the locked path must see the new position.
    db = await Database.connect(fresh_database, timeout_s=5)
    try:
        await db.migrate()
        sid = await _session_on(db)
        seen: list[int] = []

        async def check(session: SessionRow) -> None:
            seen.append(session.position)
            if len(seen) == 1:
                # The competing answer: stored while this one is being checked.
                await db.submit_answer(sid, "other", "=1", lambda s: asyncio.sleep(0))

        # The locked row shows the competing answer: its next question is not chosen yet.
        with pytest.raises(FailedPrecondition, match="still being chosen"):
            await db.submit_answer(sid, "mine", "=2", check)
        assert seen == [0]
    finally:
        await db.close()
    conn = await asyncpg.connect(fresh_database)
    try:
        keys = [r["idempotency_key"] for r in await conn.fetch("SELECT idempotency_key FROM answers")]
        assert keys == ["other"]
        assert await conn.fetchval("SELECT count(*) FROM audit_log WHERE event = 'answer_submitted'") == 1
        assert await conn.fetchval("SELECT position FROM sessions WHERE session_id = $1", sid) == 1
    finally:
        await conn.close()


async def test_an_answer_after_the_time_limit_finishes_the_session(fresh_database: str) -> None:
    db = await Database.connect(fresh_database, timeout_s=5)
    try:
        await db.migrate()
        sid = await _session_on(db, time_limit_s=0.001)
        await asyncio.sleep(0.05)
        with pytest.raises(TimeLimitReached):
            await db.submit_answer(sid, "late", "=1", lambda s: asyncio.sleep(0))
        session = await db.get_session(sid)
        assert session is not None and session.finished and session.stop_reason == "time_limit"
        assert await db.turns(sid) == []
    finally:
        await db.close()


async def test_only_one_of_two_concurrent_decisions_applies(fresh_database: str) -> None:
    db = await Database.connect(fresh_database, timeout_s=5)
    try:
        await db.migrate()
        sid = await _session_on(db)
        await db.submit_answer(sid, "k1", "=1", lambda s: asyncio.sleep(0))
        decisions = await asyncio.gather(
            db.advance(sid, 1, ItemRef(BANK[1].id, 1), None), db.advance(sid, 1, None, "stopped"),
            db.advance(sid, 1, ItemRef(BANK[1].id, 1), None),
        )
        assert [applied for _, applied in decisions].count(True) == 1
        final = await db.get_session(sid)
        assert final is not None
        # The losers changed nothing and saw the winner's decision.
        assert [row for row, _ in decisions] == [final] * 3
        finished = final.finished
        assert (finished, len(final.items)) in ((True, 1), (False, 2))
        # A decision for an answer the session is no longer waiting on changes nothing.
        assert await db.advance(sid, 0, ItemRef(BANK[1].id, 1), None) == (final, False)
    finally:
        await db.close()
    conn = await asyncpg.connect(fresh_database)
    try:
        assert await conn.fetchval("SELECT count(*) FROM audit_log WHERE event = 'session_finished'") == int(finished)
    finally:
        await conn.close()


def _score(value: float) -> common_pb2.Score:
    return common_pb2.Score(value=value, confidence=0.9, feedback=f"value {value}")


async def test_the_first_stored_score_wins_when_two_arrive_at_once(fresh_database: str) -> None:
    db = await Database.connect(fresh_database, timeout_s=5)
    try:
        await db.migrate()
        sid = await _session_on(db)
        stored = await db.submit_answer(sid, "k1", "=1", lambda s: asyncio.sleep(0))
        answer_id = stored.answer.answer_id
        results = await asyncio.gather(*(db.store_first_score(sid, answer_id, _score(v)) for v in (0.2, 0.5, 0.8)))
        assert len({r.score.value for r in results}) == 1
        assert (await db.turns(sid))[0].score == results[0].score
        # Each call's turns carry the winning score, whichever call stored it.
        assert all(r.turns == [Turn(stored.answer, results[0].score)] for r in results)
    finally:
        await db.close()
    conn = await asyncpg.connect(fresh_database)
    try:
        assert await conn.fetchval("SELECT count(*) FROM scores WHERE answer_id = $1", answer_id) == 1
        assert await conn.fetchval("SELECT count(*) FROM audit_log WHERE event = 'answer_scored'") == 1
    finally:
        await conn.close()


async def test_storing_a_score_returns_the_sessions_turns_as_stored(fresh_database: str) -> None:
    db = await Database.connect(fresh_database, timeout_s=5)
    try:
        await db.migrate()
        sid = await _session_on(db)
        first = (await db.submit_answer(sid, "k1", "=1", lambda s: asyncio.sleep(0))).answer
        await db.store_first_score(sid, first.answer_id, _score(0.4))
        await db.advance(sid, 1, ItemRef(BANK[1].id, 1), None)
        second = (await db.submit_answer(sid, "k2", "=2", lambda s: asyncio.sleep(0))).answer
        stored = await db.store_first_score(sid, second.answer_id, _score(0.7))
        assert stored.score.value == 0.7
        assert stored.turns == [Turn(first, _score(0.4)), Turn(second, _score(0.7))]
        assert stored.turns == await db.turns(sid)
    finally:
        await db.close()


async def test_answers_scored_before_the_first_scores_table_keep_their_score(
    fresh_database: str, tmp_path: Path
) -> None:
    older = tmp_path / "migrations"
    older.mkdir()
    for version, _, path in discover_migrations():
        if version < 16:
            (older / path.name).write_text(path.read_text())
    db = await Database.connect(fresh_database, timeout_s=5)
    try:
        await db.migrate(older)
        sid = await _session_on(db)
        answer_id = (await db.submit_answer(sid, "k1", "=1", lambda s: asyncio.sleep(0))).answer.answer_id
        conn = await asyncpg.connect(fresh_database)
        try:  # stored as the code before migration 0016 stored a score
            await conn.execute(
                "INSERT INTO scores (answer_id, value, confidence, score, score_pb) VALUES ($1, 0.3, 0.9, '{}', $2)",
                answer_id, _score(0.3).SerializeToString(),
            )
        finally:
            await conn.close()
        # 16 and the migrations after it.
        assert (await db.migrate(MIGRATIONS_DIR))[0] == 16
        assert (await db.store_first_score(sid, answer_id, _score(0.9))).score.value == 0.3
    finally:
        await db.close()
