"""The orchestrator killed mid-interview and restarted: the session continues where it was,
and server-side time limits with per-candidate extra time."""

from __future__ import annotations

import asyncio
import signal
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
import grpc
import pytest

from orch_helpers import FakeScorer, good_answer, running_orchestrator, spawn_orchestrator, wait_until_serving
from stack.backing import free_port
from xlinterview.v1 import orchestrator_pb2 as pb
from xlinterview.v1 import orchestrator_pb2_grpc


@asynccontextmanager
async def orchestrator_process(postgres, redis_server, scorer_port: int, address: str) -> AsyncIterator[asyncio.subprocess.Process]:  # type: ignore[no-untyped-def]
    proc = await spawn_orchestrator(
        capture_output=False,
        DATABASE_URL=postgres.url,
        REDIS_URL=redis_server.url,
        XLI_SCORER_ADDRESS=f"127.0.0.1:{scorer_port}",
        XLI_ORCHESTRATOR_ADDRESS=address,
    )
    try:
        await wait_until_serving(proc, address)
        yield proc
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_killed_mid_interview_resumes_with_no_lost_or_duplicated_turn(  # type: ignore[no-untyped-def]
    postgres, redis_server, fake_scorer, scorer: FakeScorer, pg: asyncpg.Connection
) -> None:
    address = f"127.0.0.1:{free_port()}"
    submitted: list[tuple[str, str]] = []  # (idempotency key, answer id)
    async with orchestrator_process(postgres, redis_server, fake_scorer[1], address) as proc:
        async with grpc.aio.insecure_channel(address) as channel:
            stub = orchestrator_pb2_grpc.OrchestratorStub(channel)
            started = await stub.StartInterview(pb.StartInterviewRequest(candidate_name="Restart"), timeout=10)
            sid, question = started.session.session_id, started.question
            for _ in range(3):
                key = uuid.uuid4().hex
                reply = await stub.SubmitAnswer(
                    pb.SubmitAnswerRequest(session_id=sid, item_id=question.item_id, answer=good_answer(question), idempotency_key=key),
                    timeout=10,
                )
                submitted.append((key, reply.answer_id))
                question = reply.next_question
        proc.send_signal(signal.SIGKILL)  # no graceful shutdown
        await proc.wait()

    async with orchestrator_process(postgres, redis_server, fake_scorer[1], address):
        async with grpc.aio.insecure_channel(address) as channel:
            stub = orchestrator_pb2_grpc.OrchestratorStub(channel)
            current = await stub.GetCurrentQuestion(pb.GetCurrentQuestionRequest(session_id=sid), timeout=10)
            assert current == question
            # The client never saw the reply to its last answer: it retries, and gets the first result.
            key, answer_id = submitted[-1]
            previous = next(i for i, (k, _) in enumerate(submitted) if k == key)
            session = await stub.GetSession(pb.GetSessionRequest(session_id=sid), timeout=10)
            retry = await stub.SubmitAnswer(
                pb.SubmitAnswerRequest(session_id=sid, item_id=session.turns[previous].item_id, answer="x", idempotency_key=key),
                timeout=10,
            )
            assert retry.answer_id == answer_id and retry.next_question == question
            while True:
                key = uuid.uuid4().hex
                reply = await stub.SubmitAnswer(
                    pb.SubmitAnswerRequest(session_id=sid, item_id=question.item_id, answer=good_answer(question), idempotency_key=key),
                    timeout=10,
                )
                submitted.append((key, reply.answer_id))
                if reply.finished:
                    break
                question = reply.next_question
            session = await stub.GetSession(pb.GetSessionRequest(session_id=sid), timeout=10)
    assert [t.answer_id for t in session.turns] == [a for _, a in submitted]
    assert len({t.item_id for t in session.turns}) == len(session.turns)
    assert session.status == pb.SESSION_STATUS_FINISHED and session.result.answers_scored == len(submitted)
    rows = await pg.fetch("SELECT position FROM answers WHERE session_id = $1 ORDER BY position", uuid.UUID(sid))
    assert [r["position"] for r in rows] == list(range(len(submitted)))


async def test_time_limit_is_enforced_with_extra_time(make_settings, scorer: FakeScorer, pg: asyncpg.Connection) -> None:  # type: ignore[no-untyped-def]
    async with running_orchestrator(make_settings(interview_time_limit_s=1.0, max_extra_time_percent=100)) as (_, stub):
        standard = await stub.StartInterview(pb.StartInterviewRequest(candidate_name="Standard"))
        extended = await stub.StartInterview(pb.StartInterviewRequest(candidate_name="Extended", extra_time_percent=100))
        span = lambda s: s.deadline.ToDatetime() - s.started_at.ToDatetime()  # noqa: E731
        assert span(standard.session).total_seconds() == pytest.approx(1.0, abs=0.2)
        assert span(extended.session).total_seconds() == pytest.approx(2.0, abs=0.2)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.StartInterview(pb.StartInterviewRequest(candidate_name="Too much", extra_time_percent=101))
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT

        await asyncio.sleep(1.3)
        sid, q = standard.session.session_id, standard.question
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.SubmitAnswer(pb.SubmitAnswerRequest(session_id=sid, item_id=q.item_id, answer=good_answer(q), idempotency_key="late"))
        assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION and "time limit" in caught.value.details()
        assert await pg.fetchval("SELECT count(*) FROM answers WHERE session_id = $1", uuid.UUID(sid)) == 0
        session = await stub.GetSession(pb.GetSessionRequest(session_id=sid))
        assert session.status == pb.SESSION_STATUS_FINISHED and session.result.stop_reason == "time_limit"

        # The accommodated candidate still has time.
        q2 = extended.question
        reply = await stub.SubmitAnswer(
            pb.SubmitAnswerRequest(session_id=extended.session.session_id, item_id=q2.item_id, answer=good_answer(q2), idempotency_key="in-time")
        )
        assert reply.answer_id
