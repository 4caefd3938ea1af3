"""Backing services that disappear, and the service run as its own process."""

from __future__ import annotations

import asyncio
import signal
import time
import uuid

import grpc
import pytest

from orch_helpers import TcpProxy, running_orchestrator, spawn_orchestrator, wait_until_serving
from stack.backing import free_port
from xlinterview.v1 import orchestrator_pb2 as pb
from xlinterview.v1 import orchestrator_pb2_grpc



async def expect_unavailable(call, within_s: float) -> str:  # type: ignore[no-untyped-def]
    began = time.monotonic()
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE, caught.value.details()
    assert time.monotonic() - began < within_s
    return caught.value.details()


async def test_database_outage_is_unavailable_never_a_hang(make_settings, postgres, scorer, pg) -> None:  # type: ignore[no-untyped-def]
    proxy = TcpProxy("127.0.0.1", postgres.port)
    await proxy.start()
    url = postgres.url.replace(f":{postgres.port}/", f":{proxy.port}/")
    try:
        async with running_orchestrator(make_settings(database_url=url, db_timeout_s=1.0)) as (_, stub):
            started = await stub.StartInterview(pb.StartInterviewRequest(candidate_name="Outage"))
            sid, q1 = started.session.session_id, started.question
            submit = pb.SubmitAnswerRequest(session_id=sid, item_id=q1.item_id, answer="=1", idempotency_key="o1")

            # Down: connections reset, new ones refused.
            await proxy.refuse()
            details = await expect_unavailable(
                stub.StartInterview(pb.StartInterviewRequest(candidate_name="Nobody")), within_s=3
            )
            assert "database" in details
            await expect_unavailable(stub.GetSession(pb.GetSessionRequest(session_id=sid)), within_s=3)
            await expect_unavailable(stub.SubmitAnswer(submit), within_s=3)
            # The cached state still answers reads that need nothing else.
            current = await stub.GetCurrentQuestion(pb.GetCurrentQuestionRequest(session_id=sid))
            assert current == q1

            # Hanging: connections accepted, never answered. The timeout must cut it.
            proxy.mode = "blackhole"
            await proxy.start()
            await expect_unavailable(stub.SubmitAnswer(submit), within_s=4)
            await expect_unavailable(
                stub.FinishInterview(pb.FinishInterviewRequest(session_id=sid)), within_s=4
            )

            # Back: the pool reconnects by itself and nothing was half-stored.
            proxy.mode = "forward"
            proxy.cut()
            deadline = time.monotonic() + 10
            while True:
                try:
                    result = await stub.SubmitAnswer(submit)
                    break
                except grpc.aio.AioRpcError as exc:
                    assert exc.code() == grpc.StatusCode.UNAVAILABLE
                    assert time.monotonic() < deadline, "did not recover from the database outage"
                    await asyncio.sleep(0.2)
            assert result.next_question.position == 2
            stored = await pg.fetchval("SELECT count(*) FROM answers WHERE session_id = $1", uuid.UUID(sid))
            assert stored == 1
            status = await pg.fetchval("SELECT status FROM sessions WHERE session_id = $1", uuid.UUID(sid))
            assert status == "in_progress"
    finally:
        await proxy.close()


async def test_runs_as_a_process_and_stops_on_sigterm(postgres, redis_server, fake_scorer) -> None:  # type: ignore[no-untyped-def]
    address = f"127.0.0.1:{free_port()}"
    proc = await spawn_orchestrator(
        DATABASE_URL=postgres.url,
        REDIS_URL=redis_server.url,
        XLI_SCORER_ADDRESS=f"127.0.0.1:{fake_scorer[1]}",
        XLI_ORCHESTRATOR_ADDRESS=address,
    )
    try:
        await wait_until_serving(proc, address)
        async with grpc.aio.insecure_channel(address) as channel:
            stub = orchestrator_pb2_grpc.OrchestratorStub(channel)
            started = await stub.StartInterview(pb.StartInterviewRequest(candidate_name="Process"), timeout=10)
            assert started.question.position == 1
        proc.send_signal(signal.SIGTERM)
        _, stderr = await asyncio.wait_for(proc.communicate(), timeout=20)
        assert proc.returncode == 0, stderr.decode()[-2000:]
        assert b'"service": "orchestrator"' in stderr  # JSON logs by default
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_missing_database_url_is_a_clear_error() -> None:
    proc = await spawn_orchestrator(REDIS_URL="redis://127.0.0.1:1/0", XLI_LOG_JSON="false")
    _, stderr = await asyncio.wait_for(proc.communicate(), timeout=30)
    assert proc.returncode == 2, stderr.decode()[-3000:]
    assert b"DATABASE_URL" in stderr and b"REDIS_URL" not in stderr
