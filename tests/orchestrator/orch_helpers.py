"""Test doubles and tools for the orchestrator tests."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import asyncpg
import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from common.grpc_server import create_server
from orchestrator.app import Orchestrator
from orchestrator.identity import IdentitySettings
from orchestrator.settings import OrchestratorSettings
from xlinterview.v1 import common_pb2, orchestrator_pb2 as pb, orchestrator_pb2_grpc, scorer_pb2, scorer_pb2_grpc


REPO = Path(__file__).resolve().parents[2]


def orchestrator_settings(
    postgres_url: str, redis_url: str, scorer_port: int, /, **overrides: object
) -> OrchestratorSettings:
    """Settings for an orchestrator on the tests' PostgreSQL, Redis and fake scorer, with
    short timeouts, and ``overrides`` (which may name any setting, those three included)."""
    values: dict[str, object] = {
        "database_url": postgres_url,
        "redis_url": redis_url,
        "scorer_address": f"127.0.0.1:{scorer_port}",
        "scorer_deadline_s": 1.0,
        "db_timeout_s": 2.0,
        "redis_timeout_s": 0.5,
        "redis_retry_after_s": 0.0,
        "startup_timeout_s": 5.0,
        "max_answer_chars": 2000,
        "log_json": False,
        # Off unless a test turns it on: a background sweep would score other
        # tests' deliberately unscored answers behind their backs.
        "scoring_retry_interval_s": 0,
    }
    values.update(overrides)
    return OrchestratorSettings(**values)  # type: ignore[arg-type]


def orchestrator_env(**values: str) -> dict[str, str]:
    """Our environment without backing URLs or ``XLI_`` settings, plus ``values``."""
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL") and not k.startswith("XLI_")}
    env["PYTHONPATH"] = str(REPO)
    env.update(values)
    return env


async def spawn_orchestrator(*, capture_output: bool = True, **env: str) -> asyncio.subprocess.Process:
    """``python -m orchestrator`` as a child process with ``env`` added to :func:`orchestrator_env`.

    Args:
        capture_output: Pipe stdout and stderr (for the test to read); else discard them.
        **env: Environment variables, e.g. ``DATABASE_URL``.
    """
    output = asyncio.subprocess.PIPE if capture_output else asyncio.subprocess.DEVNULL
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "orchestrator", cwd=REPO, env=orchestrator_env(**env), stdout=output, stderr=output
    )


async def wait_until_serving(proc: asyncio.subprocess.Process, address: str, timeout_s: float = 30) -> None:
    """Waits for the process's health check to say SERVING; fails the test if it exits first."""
    async with grpc.aio.insecure_channel(address) as channel:
        request = health_pb2.HealthCheckRequest(service="xlinterview.v1.Orchestrator")
        check = asyncio.ensure_future(
            health_pb2_grpc.HealthStub(channel).Check(request, timeout=timeout_s, wait_for_ready=True)
        )
        exited = asyncio.ensure_future(proc.wait())
        await asyncio.wait([check, exited], return_when=asyncio.FIRST_COMPLETED)
        if exited.done():
            check.cancel()
            stderr = await proc.stderr.read() if proc.stderr is not None else b""
            pytest.fail(f"orchestrator exited with {proc.returncode}: {stderr.decode()[-3000:]}")
        exited.cancel()
        assert (await check).status == health_pb2.HealthCheckResponse.SERVING


class FakeScorer(scorer_pb2_grpc.ScorerServicer):
    """A Scorer whose answers the test controls.

    ``mode`` is ``ok`` (answer with ``values[item_id]`` or 0.75), ``unavailable``
    (abort with UNAVAILABLE) or ``slow`` (sleep ``delay_s`` first). ``grade``, when
    set, is called with each request and may return a Score whose value, criteria,
    signals, review flag and reason, and (when non-zero) confidence replace the
    defaults (None keeps them). Every request is recorded.
    """

    def __init__(self) -> None:
        self.mode = "ok"
        self.delay_s = 3.0
        self.values: dict[str, float] = {}
        self.grade: Callable[[scorer_pb2.ScoreRequest], common_pb2.Score | None] | None = None
        self.requests: list[scorer_pb2.ScoreRequest] = []

    def reset(self) -> None:
        self.mode = "ok"
        self.values.clear()
        self.grade = None
        self.requests.clear()

    async def Score(self, request, context):  # type: ignore[no-untyped-def]
        self.requests.append(request)
        if self.mode == "unavailable":
            await context.abort(grpc.StatusCode.UNAVAILABLE, "fake scorer is down")
        if self.mode == "slow":
            await asyncio.sleep(self.delay_s)
        score = common_pb2.Score(
            value=self.values.get(request.item.item_id, 0.75),
            confidence=0.9,
            feedback=f"fake feedback for {request.item.item_id}",
            evidence=[f"answer length {len(request.answer.text)}"],
            signals=["test.fake_scorer"],
            provenance=common_pb2.ScoreProvenance(model_name="fake", model_version="1", backend="rule", code_version="test"),
        )
        graded = self.grade(request) if self.grade is not None else None
        if graded is not None:
            score.value = graded.value
            score.criteria.extend(graded.criteria)
            score.signals.extend(graded.signals)
            score.confidence = graded.confidence or score.confidence
            score.needs_review = graded.needs_review
            score.review_reason = graded.review_reason
        return scorer_pb2.ScoreResponse(answer_id=request.answer.answer_id, score=score)


async def start_fake_scorer(fake: FakeScorer, port: int = 0) -> tuple[grpc.aio.Server, int]:
    server = grpc.aio.server()
    scorer_pb2_grpc.add_ScorerServicer_to_server(fake, server)
    bound = server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    return server, bound


@contextlib.asynccontextmanager
async def serving_orchestrator(
    settings: OrchestratorSettings, identity: IdentitySettings | None = None
) -> AsyncIterator[tuple[Orchestrator, grpc.aio.Channel]]:
    """The real orchestrator, staff services included, behind a real gRPC server on a
    free port, and a channel to it."""
    app = Orchestrator(settings, identity)
    await app.start()
    server = create_server()
    app.add_to_server(server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    try:
        yield app, channel
    finally:
        await channel.close()
        await server.stop(grace=1)
        await app.close()


@contextlib.asynccontextmanager
async def running_orchestrator(
    settings: OrchestratorSettings,
) -> AsyncIterator[tuple[Orchestrator, orchestrator_pb2_grpc.OrchestratorStub]]:
    """The real orchestrator behind a real gRPC server on a free port, and a client stub."""
    async with serving_orchestrator(settings) as (app, channel):
        yield app, orchestrator_pb2_grpc.OrchestratorStub(channel)


class TcpProxy:
    """A TCP forwarder that a test can cut, to make a backing service disappear.

    Modes: ``forward`` (pass bytes through), ``blackhole`` (accept connections but
    never answer), and :meth:`refuse` (close every connection and stop listening).
    """

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.mode = "forward"
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def refuse(self) -> None:
        """Drops every connection and stops listening: new connections are refused."""
        if self._server is not None:
            self._server.close()
            self._server = None
        self.cut()

    def cut(self) -> None:
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    async def close(self) -> None:
        await self.refuse()
        for task in list(self._tasks):
            task.cancel()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.transport.abort()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        if self.mode == "blackhole":
            return  # keep the socket open and silent until cut()
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        self._writers.add(up_writer)
        for task in (
            asyncio.create_task(self._pipe(reader, up_writer)),
            asyncio.create_task(self._pipe(up_reader, writer)),
        ):
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)


# -- calling the service in tests -------------------------------------------------------


def good_answer(question: pb.Question) -> str:
    """Some answer of the right shape for ``question`` (the fake scorer does not grade it)."""
    if question.kind == common_pb2.QUESTION_KIND_MULTIPLE_CHOICE:
        return "0"
    if question.kind == common_pb2.QUESTION_KIND_FORMULA:
        return "=SUM(D2:D11)"
    if question.kind == common_pb2.QUESTION_KIND_NUMERIC:
        return "42"
    return "A relative reference shifts when copied; an absolute one like $A$1 stays fixed."


async def start(stub, name: str = "Ada Lovelace") -> pb.StartInterviewResponse:  # type: ignore[no-untyped-def]
    return await stub.StartInterview(pb.StartInterviewRequest(candidate_name=name))


async def submit(stub, session_id: str, question: pb.Question, answer: str | None = None, key: str | None = None):  # type: ignore[no-untyped-def]
    return await stub.SubmitAnswer(
        pb.SubmitAnswerRequest(
            session_id=session_id,
            item_id=question.item_id,
            answer=good_answer(question) if answer is None else answer,
            idempotency_key=key or uuid.uuid4().hex,
        )
    )


async def rpc_error(call) -> grpc.aio.AioRpcError:  # type: ignore[no-untyped-def]
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    return caught.value


async def count_rows(pg: asyncpg.Connection, session_id: str) -> tuple[int, int]:
    """(answers, scores) stored for a session."""
    answers = await pg.fetchval("SELECT count(*) FROM answers WHERE session_id = $1", uuid.UUID(session_id))
    scores = await pg.fetchval(
        "SELECT count(*) FROM scores s JOIN answers a USING (answer_id) WHERE a.session_id = $1",
        uuid.UUID(session_id),
    )
    return answers, scores


async def next_message(pubsub, timeout_s: float) -> dict:  # type: ignore[no-untyped-def]
    """The next message published on a subscribed channel; fails the test after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while (left := deadline - time.monotonic()) > 0:
        message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=left)
        if message is not None and message["type"] == "message":
            return message  # type: ignore[no-any-return]
    raise AssertionError(f"nothing was published within {timeout_s} s")
