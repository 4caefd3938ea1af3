"""The Orchestrator service end to end through gRPC, on real PostgreSQL and Redis.

Only the scorer is a test double (see ``orch_helpers.FakeScorer``), so these tests
pin the orchestrator's own behaviour: what is stored, when, and which status a
caller sees when something fails.
"""

from __future__ import annotations

import asyncio
import time
import uuid

import asyncpg
import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from common import session_events
from common.errors import ERROR_DOMAIN, REASON_SCORE_NOT_STORED, REASON_SCORING_UNAVAILABLE, Unavailable
from orch_helpers import (
    FakeScorer,
    TcpProxy,
    count_rows,
    next_message,
    good_answer,
    rpc_error,
    running_orchestrator,
    start,
    start_fake_scorer,
    submit,
)
from orchestrator.bank import load_bank
from orchestrator.service import EVENT_PUBLISH_ERRORS
from orchestrator.settings import DEFAULT_BANK_DIR, OrchestratorSettings
from orchestrator.state import SessionState
from stack.backing import free_port
from xlinterview.v1 import common_pb2, orchestrator_pb2 as pb

BANK = load_bank(DEFAULT_BANK_DIR)
AREAS = sorted({item.skill_area for item in BANK})
MAX_ITEMS = OrchestratorSettings.model_fields["cat_max_items"].default


def error_info(err: grpc.aio.AioRpcError) -> error_details_pb2.ErrorInfo:
    """The ErrorInfo in ``err``'s rich status (which must agree with its code and message)."""
    status = rpc_status.from_call(err)
    assert status is not None, f"no rich status: {err.code().name} {err.details()}"
    info = error_details_pb2.ErrorInfo()
    assert len(status.details) == 1 and status.details[0].Unpack(info)
    assert info.domain == ERROR_DOMAIN
    return info


async def test_full_interview(stub, scorer: FakeScorer, pg: asyncpg.Connection) -> None:  # type: ignore[no-untyped-def]
    # Right on the easier half of the bank, wrong on the harder half: a clear signal to adapt to.
    for item in BANK:
        scorer.values[item.id] = 1.0 if item.difficulty <= 2 else 0.0
    started = await start(stub, "  Grace Hopper  ")
    session_id = started.session.session_id
    assert started.session.candidate_name == "Grace Hopper"
    assert started.session.status == pb.SESSION_STATUS_IN_PROGRESS
    assert started.session.started_at.seconds > 0 and not started.session.HasField("finished_at")
    assert started.session.deadline.seconds > started.session.started_at.seconds
    question = started.question
    assert (question.position, question.total) == (1, MAX_ITEMS)

    answer_ids, asked = [], []
    while True:
        current = await stub.GetCurrentQuestion(pb.GetCurrentQuestionRequest(session_id=session_id))
        assert current == question
        asked.append(question.item_id)
        result = await submit(stub, session_id, question)
        answer_ids.append(result.answer_id)
        assert result.score.value == scorer.values[question.item_id]
        sent = scorer.requests[-1]
        assert sent.answer.answer_id == result.answer_id
        assert sent.answer.text == good_answer(question)
        assert sent.item.item_id == question.item_id and sent.item.item_version == question.item_version
        if result.finished:
            assert not result.HasField("next_question")
            break
        question = result.next_question
        assert question.position == len(asked) + 1 and question.total == MAX_ITEMS

    # Adaptive: no repeats, every skill area asked once before any twice, within the maximum.
    assert len(set(asked)) == len(asked)
    assert len(AREAS) <= len(asked) <= MAX_ITEMS
    area_of = {i.id: i.skill_area for i in BANK}
    counts = [sum(area_of[a] == area for a in asked) for area in AREAS]
    assert max(counts) - min(counts) <= 1, counts

    err = await rpc_error(stub.GetCurrentQuestion(pb.GetCurrentQuestionRequest(session_id=session_id)))
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION
    session = await stub.GetSession(pb.GetSessionRequest(session_id=session_id))
    assert session.status == pb.SESSION_STATUS_FINISHED and session.HasField("finished_at")
    assert [t.answer_id for t in session.turns] == answer_ids
    assert [t.item_id for t in session.turns] == asked
    assert [t.skill_area for t in session.turns] == [area_of[a] for a in asked]
    assert all(t.HasField("score") and t.submitted_at.seconds > 0 and t.prompt for t in session.turns)
    res = session.result
    assert res.stop_reason in ("se_target", "max_items") and res.answers_scored == len(asked)
    assert res.ci_low < res.ability < res.ci_high and res.standard_error > 0
    assert -2.0 < res.ability < 1.5  # right on easy items, wrong on hard ones: middling ability
    assert {k.skill_area for k in res.skills} == set(AREAS)
    assert sum(k.answers for k in res.skills) == len(asked)
    total = len(asked)
    assert await count_rows(pg, session_id) == (total, total)
    row = await pg.fetchrow(
        "SELECT status, position, stop_reason FROM sessions WHERE session_id = $1", uuid.UUID(session_id))
    assert (row["status"], row["position"], row["stop_reason"]) == ("finished", total, res.stop_reason)
    stored = await pg.fetch("SELECT answers_scored FROM results WHERE session_id = $1", uuid.UUID(session_id))
    assert [r["answers_scored"] for r in stored] == [total]
    events = [r["event"] for r in await pg.fetch(
        "SELECT event FROM audit_log WHERE session_id = $1 ORDER BY id", uuid.UUID(session_id))]
    assert events.count("answer_submitted") == total and events.count("answer_scored") == total
    assert events[0] == "session_started" and events.count("session_finished") == 1

    err = await rpc_error(submit(stub, session_id, question))
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert await count_rows(pg, session_id) == (total, total)


async def test_idempotent_resubmission(stub, scorer: FakeScorer, pg: asyncpg.Connection) -> None:  # type: ignore[no-untyped-def]
    started = await start(stub)
    sid, first_q = started.session.session_id, started.question
    first = await submit(stub, sid, first_q, key="key-1")
    again = await submit(stub, sid, first_q, key="key-1")
    assert again == first  # same answer id, same stored score, same next question
    assert len(scorer.requests) == 1
    # Still the first result after the interview moved on, whatever the retry carries.
    await submit(stub, sid, first.next_question, key="key-2")
    late = await submit(stub, sid, first_q, answer="something else", key="key-1")
    assert late == first
    assert await count_rows(pg, sid) == (2, 2)
    assert (await stub.GetCurrentQuestion(pb.GetCurrentQuestionRequest(session_id=sid))).position == 3


async def test_concurrent_submissions_store_one_answer(stub, scorer: FakeScorer, pg: asyncpg.Connection) -> None:  # type: ignore[no-untyped-def]
    started = await start(stub)
    sid, q = started.session.session_id, started.question
    same_key = await asyncio.gather(*(submit(stub, sid, q, key="dup") for _ in range(4)))
    assert len({r.answer_id for r in same_key}) == 1
    assert await count_rows(pg, sid) == (1, 1)

    # Two different answers to one question: one wins, the other is told it is stale.
    q2 = same_key[0].next_question
    outcomes = await asyncio.gather(*(submit(stub, sid, q2, key=f"k{i}") for i in range(2)), return_exceptions=True)
    errors = [o for o in outcomes if isinstance(o, grpc.aio.AioRpcError)]
    assert len(errors) == 1 and errors[0].code() == grpc.StatusCode.FAILED_PRECONDITION
    assert await count_rows(pg, sid) == (2, 2)


async def test_wrong_item_is_refused_and_nothing_stored(stub, scorer: FakeScorer, pg: asyncpg.Connection) -> None:  # type: ignore[no-untyped-def]
    started = await start(stub)
    sid = started.session.session_id
    first = started.question.item_id
    other = pb.Question(item_id=next(i.id for i in BANK if i.id != first), kind=common_pb2.QUESTION_KIND_FORMULA)
    err = await rpc_error(submit(stub, sid, other))
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert first in err.details()
    assert await count_rows(pg, sid) == (0, 0)
    assert scorer.requests == []
    current = await stub.GetCurrentQuestion(pb.GetCurrentQuestionRequest(session_id=sid))
    assert current.position == 1 and current.item_id == first


@pytest.mark.parametrize(
    ("answer", "key", "item_id", "needle"),
    [
        ("", "k", None, "answer is empty"),
        ("   \n\t ", "k", None, "answer is empty"),
        ("x" * 2001, "k", None, "longer than 2000"),
        ("=SUM(A1)", "", None, "idempotency_key is required"),
        ("=SUM(A1)", "k" * 201, None, "idempotency_key is longer"),
        ("=SUM(A1)", "k", "", "item_id is required"),
    ],
)
async def test_invalid_answers_are_refused_and_nothing_stored(  # type: ignore[no-untyped-def]
    stub, scorer: FakeScorer, pg: asyncpg.Connection, answer: str, key: str, item_id: str | None, needle: str
) -> None:
    started = await start(stub)
    sid = started.session.session_id
    request = pb.SubmitAnswerRequest(
        session_id=sid,
        item_id=started.question.item_id if item_id is None else item_id,
        answer=answer,
        idempotency_key=key,
    )
    err = await rpc_error(stub.SubmitAnswer(request))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert needle in err.details()
    assert await count_rows(pg, sid) == (0, 0)
    assert scorer.requests == []


async def test_multiple_choice_answer_must_be_an_option_index(stub, scorer: FakeScorer, pg: asyncpg.Connection) -> None:  # type: ignore[no-untyped-def]
    # The engine picks the items; a fresh session is started until one asks multiple choice.
    for _ in range(20):
        started = await start(stub)
        sid, question = started.session.session_id, started.question
        result = None
        while question.kind != common_pb2.QUESTION_KIND_MULTIPLE_CHOICE and not (result and result.finished):
            result = await submit(stub, sid, question)
            question = result.next_question
        if question.kind == common_pb2.QUESTION_KIND_MULTIPLE_CHOICE:
            break
    stored = await count_rows(pg, sid)
    for bad in ("B", "-1", str(len(question.options)), "1.0", " 1 "):
        err = await rpc_error(submit(stub, sid, question, answer=bad))
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, bad
    assert await count_rows(pg, sid) == stored
    await submit(stub, sid, question, answer="1")


async def test_unknown_and_malformed_sessions(stub) -> None:  # type: ignore[no-untyped-def]
    unknown = str(uuid.uuid4())
    q = pb.Question(item_id=BANK[0].id)
    calls = {
        "GetCurrentQuestion": lambda sid: stub.GetCurrentQuestion(pb.GetCurrentQuestionRequest(session_id=sid)),
        "SubmitAnswer": lambda sid: submit(stub, sid, q, answer="=1"),
        "GetSession": lambda sid: stub.GetSession(pb.GetSessionRequest(session_id=sid)),
        "FinishInterview": lambda sid: stub.FinishInterview(pb.FinishInterviewRequest(session_id=sid)),
    }
    for name, call in calls.items():
        assert (await rpc_error(call(unknown))).code() == grpc.StatusCode.NOT_FOUND, name
        assert (await rpc_error(call("not-a-uuid"))).code() == grpc.StatusCode.INVALID_ARGUMENT, name
        assert (await rpc_error(call(""))).code() == grpc.StatusCode.INVALID_ARGUMENT, name


@pytest.mark.parametrize("name", ["", "   ", "x" * 201, "bad\x00name"])
async def test_candidate_name_is_validated(stub, name: str) -> None:  # type: ignore[no-untyped-def]
    err = await rpc_error(start(stub, name))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_finish_is_idempotent_and_closes_the_interview(stub, scorer: FakeScorer, pg: asyncpg.Connection) -> None:  # type: ignore[no-untyped-def]
    started = await start(stub)
    sid = started.session.session_id
    await submit(stub, sid, started.question)
    first = await stub.FinishInterview(pb.FinishInterviewRequest(session_id=sid))
    second = await stub.FinishInterview(pb.FinishInterviewRequest(session_id=sid))
    assert first == second
    assert first.status == pb.SESSION_STATUS_FINISHED and first.HasField("finished_at")
    assert len(first.turns) == 1 and first.overall_score == pytest.approx(0.75)
    err = await rpc_error(stub.GetCurrentQuestion(pb.GetCurrentQuestionRequest(session_id=sid)))
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION
    err = await rpc_error(submit(stub, sid, started.question))  # any item: the session is closed
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert await count_rows(pg, sid) == (1, 1)
    finished = await pg.fetchval(
        "SELECT count(*) FROM audit_log WHERE session_id = $1 AND event = 'session_finished'", uuid.UUID(sid))
    assert finished == 1


async def test_scorer_failure_keeps_the_answer_and_a_retry_scores_it(stub, scorer: FakeScorer, pg: asyncpg.Connection) -> None:  # type: ignore[no-untyped-def]
    started = await start(stub)
    sid, q1 = started.session.session_id, started.question
    scorer.mode = "unavailable"
    err = await rpc_error(submit(stub, sid, q1, key="retry-me"))
    assert err.code() == grpc.StatusCode.UNAVAILABLE
    assert "answer saved" in err.details() and "same idempotency key" in err.details()
    assert await count_rows(pg, sid) == (1, 0)
    session = await stub.GetSession(pb.GetSessionRequest(session_id=sid))
    assert len(session.turns) == 1 and not session.turns[0].HasField("score")
    assert session.overall_score == 0.0
    # Machines need not parse the message: the reason says the answer is stored, and which.
    info = error_info(err)
    assert info.reason == REASON_SCORING_UNAVAILABLE
    assert dict(info.metadata) == {"answer_id": session.turns[0].answer_id}
    # The answer counts: the interview has moved on.
    assert (await stub.GetCurrentQuestion(pb.GetCurrentQuestionRequest(session_id=sid))).position == 2

    # Still down: the retry fails the same way and stores nothing.
    err = await rpc_error(submit(stub, sid, q1, key="retry-me"))
    assert err.code() == grpc.StatusCode.UNAVAILABLE
    assert await count_rows(pg, sid) == (1, 0)

    scorer.mode = "ok"
    scorer.values[q1.item_id] = 0.4
    result = await submit(stub, sid, q1, key="retry-me")
    assert result.answer_id == session.turns[0].answer_id
    assert result.score.value == 0.4
    assert result.next_question.position == 2
    assert await count_rows(pg, sid) == (1, 1)
    assert await submit(stub, sid, q1, key="retry-me") == result
    assert len(scorer.requests) == 3
    failures = await pg.fetchval(
        "SELECT count(*) FROM audit_log WHERE session_id = $1 AND event = 'scoring_failed'", uuid.UUID(sid))
    assert failures == 2


async def test_answers_an_outage_left_unscored_are_scored_in_the_background(make_settings, scorer: FakeScorer, pg: asyncpg.Connection) -> None:  # type: ignore[no-untyped-def]
    async with running_orchestrator(make_settings(scoring_retry_interval_s=0.2)) as (_, stub):
        # One candidate walks away after the outage, the other finishes at once.
        walked_away = await start(stub, "Grace Hopper")
        finished = await start(stub, "Alan Turing")
        scorer.mode = "unavailable"
        for started in (walked_away, finished):
            err = await rpc_error(submit(stub, started.session.session_id, started.question, key="k"))
            assert err.code() == grpc.StatusCode.UNAVAILABLE and "retried automatically" in err.details()
        await stub.FinishInterview(pb.FinishInterviewRequest(session_id=finished.session.session_id))
        before = await stub.GetSession(pb.GetSessionRequest(session_id=finished.session.session_id))
        assert before.result.answers_scored == 0

        scorer.mode = "ok"
        for started in (walked_away, finished):
            scorer.values[started.question.item_id] = 0.7
        # No client retries: the sweep scores both (after scorer_deadline_s + 2 s of grace).
        deadline = time.monotonic() + 30
        for started in (walked_away, finished):
            while await count_rows(pg, started.session.session_id) != (1, 1):
                assert time.monotonic() < deadline, "the background retry did not score the answer"
                await asyncio.sleep(0.2)

        session = await stub.GetSession(pb.GetSessionRequest(session_id=walked_away.session.session_id))
        assert session.turns[0].score.value == 0.7
        # The finished interview's result now counts the late score.
        after = await stub.GetSession(pb.GetSessionRequest(session_id=finished.session.session_id))
        assert after.result.answers_scored == 1
        # A late client retry gets the stored score without another scorer call.
        calls = len(scorer.requests)
        retried = await submit(stub, walked_away.session.session_id, walked_away.question, key="k")
        assert retried.score.value == 0.7
        assert len(scorer.requests) == calls


async def test_an_answer_scored_in_the_background_reaches_the_candidates_event_stream(  # type: ignore[no-untyped-def]
    make_settings, scorer: FakeScorer, pg: asyncpg.Connection, redis_client
) -> None:
    async with running_orchestrator(make_settings(scoring_retry_interval_s=0.2)) as (_, stub):
        started = await start(stub, "Katherine Johnson")
        sid, question = started.session.session_id, started.question
        # Subscribed the way the gateway's stream is, before anything can be published.
        pubsub = redis_client.pubsub()
        await pubsub.subscribe(session_events.channel(sid))
        try:
            scorer.mode = "unavailable"
            err = await rpc_error(submit(stub, sid, question, key="late-k"))
            assert err.code() == grpc.StatusCode.UNAVAILABLE
            scorer.mode = "ok"
            scorer.values[question.item_id] = 0.6
            # No client retry: only the sweep (after scorer_deadline_s + 2 s of grace) scores it.
            message = await next_message(pubsub, timeout_s=30)
        finally:
            await pubsub.aclose()
        assert await count_rows(pg, sid) == (1, 1)

        event, data = session_events.decode(message["data"])
        assert event == "answer_scored"
        assert (data["item_id"], data["idempotency_key"], data["score"]["value"]) == (question.item_id, "late-k", 0.6)
        assert data["finished"] is False and data["next_question"]["position"] == 2
        # The page completes the answer it waits on with this, so it must be exactly
        # what a retry with the same key returns (the body the gateway publishes then).
        replay = await submit(stub, sid, question, key="late-k")
        assert data == session_events.answer_scored_data(replay, question.item_id, "late-k")
        current = await stub.GetCurrentQuestion(pb.GetCurrentQuestionRequest(session_id=sid))
        assert data["next_question"]["item_id"] == current.item_id


async def test_a_failed_publish_does_not_fail_background_scoring(make_settings, scorer: FakeScorer, pg: asyncpg.Connection, redis_server) -> None:  # type: ignore[no-untyped-def]
    proxy = TcpProxy("127.0.0.1", redis_server.port)
    await proxy.start()
    try:
        settings = make_settings(redis_url=f"redis://127.0.0.1:{proxy.port}/0", scoring_retry_interval_s=0.2)
        async with running_orchestrator(settings) as (_, stub):
            started = await start(stub, "Dorothy Vaughan")
            sid = started.session.session_id
            scorer.mode = "unavailable"
            await rpc_error(submit(stub, sid, started.question, key="k"))
            # Redis stops answering: the publish can only time out.
            proxy.mode = "blackhole"
            proxy.cut()
            failures = EVENT_PUBLISH_ERRORS._value.get()
            scorer.mode = "ok"
            deadline = time.monotonic() + 30
            while await count_rows(pg, sid) != (1, 1) or EVENT_PUBLISH_ERRORS._value.get() == failures:
                assert time.monotonic() < deadline, "the background retry did not score the answer"
                await asyncio.sleep(0.2)
            session = await stub.GetSession(pb.GetSessionRequest(session_id=sid))
            assert session.turns[0].score.value == 0.75
    finally:
        await proxy.close()


async def test_slow_scorer_hits_the_deadline(stub, scorer: FakeScorer, pg: asyncpg.Connection) -> None:  # type: ignore[no-untyped-def]
    started = await start(stub)
    sid = started.session.session_id
    scorer.mode, scorer.delay_s = "slow", 5.0
    began = time.monotonic()
    err = await rpc_error(submit(stub, sid, started.question))
    assert err.code() == grpc.StatusCode.UNAVAILABLE and "answer saved" in err.details()
    assert time.monotonic() - began < 3.0  # scorer_deadline_s is 1 s in these tests
    assert await count_rows(pg, sid) == (1, 0)
    assert error_info(err).reason == REASON_SCORING_UNAVAILABLE


async def test_a_score_that_cannot_be_stored_says_so_and_a_retry_stores_it(  # type: ignore[no-untyped-def]
    orchestrator, stub, scorer: FakeScorer, pg: asyncpg.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    started = await start(stub)
    sid, question = started.session.session_id, started.question
    db = orchestrator[0].service._db

    async def cannot_store(*args: object) -> None:
        raise Unavailable("database unavailable")

    monkeypatch.setattr(db, "store_first_score", cannot_store)
    err = await rpc_error(submit(stub, sid, question, key="store-me"))
    assert err.code() == grpc.StatusCode.UNAVAILABLE and "answer saved" in err.details()
    assert await count_rows(pg, sid) == (1, 0)
    session = await stub.GetSession(pb.GetSessionRequest(session_id=sid))
    info = error_info(err)
    assert info.reason == REASON_SCORE_NOT_STORED
    assert dict(info.metadata) == {"answer_id": session.turns[0].answer_id}

    monkeypatch.undo()
    result = await submit(stub, sid, question, key="store-me")
    assert result.answer_id == session.turns[0].answer_id and result.score.value == 0.75
    assert await count_rows(pg, sid) == (1, 1)


async def test_scorer_process_down_then_back(make_settings, pg: asyncpg.Connection) -> None:  # type: ignore[no-untyped-def]
    """A scorer that is not running at all (connection refused), then comes up."""
    port = free_port()
    async with running_orchestrator(make_settings(scorer_address=f"127.0.0.1:{port}")) as (_, stub):
        started = await start(stub)
        sid, q1 = started.session.session_id, started.question
        err = await rpc_error(submit(stub, sid, q1, key="k"))
        assert err.code() == grpc.StatusCode.UNAVAILABLE and "answer saved" in err.details()
        assert await count_rows(pg, sid) == (1, 0)

        fake = FakeScorer()
        fake.values[q1.item_id] = 0.9
        server, _ = await start_fake_scorer(fake, port)
        try:
            # The channel may still be backing off from the refused connection.
            deadline = time.monotonic() + 10
            while True:
                try:
                    result = await submit(stub, sid, q1, key="k")
                    break
                except grpc.aio.AioRpcError as exc:
                    assert exc.code() == grpc.StatusCode.UNAVAILABLE
                    assert time.monotonic() < deadline, "scorer channel did not recover"
                    await asyncio.sleep(0.2)
            assert result.score.value == 0.9
            assert await count_rows(pg, sid) == (1, 1)
        finally:
            await server.stop(grace=None)


async def test_redis_flushed_mid_interview(stub, scorer: FakeScorer, redis_client) -> None:  # type: ignore[no-untyped-def]
    started = await start(stub)
    sid = started.session.session_id
    assert await redis_client.exists(f"xli:orchestrator:session:{sid}")
    r1 = await submit(stub, sid, started.question)
    await redis_client.flushall()
    current = await stub.GetCurrentQuestion(pb.GetCurrentQuestionRequest(session_id=sid))
    assert current == r1.next_question
    assert await redis_client.exists(f"xli:orchestrator:session:{sid}")  # rebuilt from PostgreSQL
    await redis_client.flushall()
    r2 = await submit(stub, sid, current)
    assert r2.next_question.position == 3
    assert (await stub.GetSession(pb.GetSessionRequest(session_id=sid))).turns[1].answer_id == r2.answer_id


async def test_stale_cache_cannot_roll_a_session_back(stub, scorer: FakeScorer, orchestrator) -> None:  # type: ignore[no-untyped-def]
    app = orchestrator[0]
    started = await start(stub)
    sid = uuid.UUID(started.session.session_id)
    r1 = await submit(stub, str(sid), started.question)
    # A slow request that read the state before the answer now writes it back late.
    current = await app.state.get(sid)
    assert current.position == 1
    await app.state.put(SessionState(sid, "in_progress", 0, current.items))
    assert await stub.GetCurrentQuestion(pb.GetCurrentQuestionRequest(session_id=str(sid))) == r1.next_question


async def test_interview_works_without_redis(make_settings, scorer: FakeScorer, pg: asyncpg.Connection) -> None:  # type: ignore[no-untyped-def]
    settings = make_settings(redis_url=f"redis://127.0.0.1:{free_port()}/0")
    async with running_orchestrator(settings) as (_, stub):
        began = time.monotonic()
        started = await start(stub)
        sid, question = started.session.session_id, started.question
        answered = 0
        while True:
            current = await stub.GetCurrentQuestion(pb.GetCurrentQuestionRequest(session_id=sid))
            assert current == question
            result = await submit(stub, sid, question)
            answered += 1
            if result.finished:
                break
            question = result.next_question
        assert answered <= MAX_ITEMS
        assert await count_rows(pg, sid) == (answered, answered)
        assert time.monotonic() - began < 10
