"""A fake orchestrator for the gateway tests.

It speaks the real v1 contract over a real ``grpc.aio`` server (with the shared
error interceptor and the standard health service), so the gateway is exercised
end to end except for the orchestrator's own logic. A uniquely named module rather
than conftest, so other test folders' conftest files cannot shadow it.
"""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import grpc
from google.protobuf.timestamp_pb2 import Timestamp
from grpc_health.v1 import health

from xlinterview.v1 import common_pb2, orchestrator_pb2, orchestrator_pb2_grpc


def _sheet() -> common_pb2.SampleSheet:
    def row(*cells: Any) -> common_pb2.SheetRow:
        out = common_pb2.SheetRow()
        for cell in cells:
            value = out.cells.add()
            if cell is None:
                continue
            if isinstance(cell, bool):
                value.boolean = cell
            elif isinstance(cell, (int, float)):
                value.number = float(cell)
            else:
                value.text = cell
        return out

    return common_pb2.SampleSheet(
        name="Sales",
        rows=[
            row("Region", "Amount", "Paid"),
            row("East", 1250, True),
            row("West", 980.5, False),
            row(None, 40),
        ],
    )


QUESTIONS = [
    orchestrator_pb2.Question(
        item_id="sum-east",
        item_version=3,
        kind=common_pb2.QUESTION_KIND_FORMULA,
        prompt="Total the East amounts.",
        skill_area="aggregation",
        sheet=_sheet(),
    ),
    orchestrator_pb2.Question(
        item_id="lookup-choice",
        item_version=1,
        kind=common_pb2.QUESTION_KIND_MULTIPLE_CHOICE,
        prompt="Which function looks up a value by key?",
        skill_area="lookup",
        options=["SUM", "XLOOKUP", "LEN"],
    ),
]


class FakeOrchestrator(orchestrator_pb2_grpc.OrchestratorServicer):
    """An in-memory orchestrator with knobs to fail, stall, and record calls.

    Attributes:
        fail: When set, every call aborts with this (code, message).
        crash: When set, every call raises it, as a bug in the orchestrator would.
        delay: Seconds every call sleeps before answering.
        calls: (method, request, metadata, time_remaining) of each call received.
    """

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.fail: tuple[grpc.StatusCode, str] | None = None
        self.crash: Exception | None = None
        self.delay = 0.0
        self.calls: list[tuple[str, Any, dict[str, str], float | None]] = []
        self.sessions: dict[str, orchestrator_pb2.Session] = {}
        self.positions: dict[str, int] = {}
        self.by_key: dict[str, orchestrator_pb2.SubmitAnswerResponse] = {}

    async def _enter(self, method: str, request: Any, context: grpc.aio.ServicerContext) -> None:
        metadata = {k: v for k, v in (context.invocation_metadata() or ()) if isinstance(v, str)}
        self.calls.append((method, request, metadata, context.time_remaining()))
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.fail is not None:
            await context.abort(*self.fail)
        if self.crash is not None:
            raise self.crash

    def _question(self, session_id: str) -> orchestrator_pb2.Question:
        q = orchestrator_pb2.Question()
        q.CopyFrom(QUESTIONS[self.positions[session_id]])
        q.position = self.positions[session_id] + 1
        q.total = len(QUESTIONS)
        return q

    async def _session(self, session_id: str, context: grpc.aio.ServicerContext) -> orchestrator_pb2.Session:
        if session_id not in self.sessions:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"session {session_id} does not exist")
        return self.sessions[session_id]

    async def StartInterview(self, request, context):  # noqa: N802 - gRPC method name
        await self._enter("StartInterview", request, context)
        if not request.candidate_name:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "candidate_name is required")
        session_id = f"s{len(self.sessions) + 1}"
        started = Timestamp()
        started.FromSeconds(1_700_000_000)
        session = orchestrator_pb2.Session(
            session_id=session_id,
            candidate_name=request.candidate_name,
            status=orchestrator_pb2.SESSION_STATUS_IN_PROGRESS,
            started_at=started,
        )
        self.sessions[session_id] = session
        self.positions[session_id] = 0
        return orchestrator_pb2.StartInterviewResponse(session=session, question=self._question(session_id))

    async def GetCurrentQuestion(self, request, context):  # noqa: N802
        await self._enter("GetCurrentQuestion", request, context)
        session = await self._session(request.session_id, context)
        if session.status == orchestrator_pb2.SESSION_STATUS_FINISHED:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, "the interview is finished")
        return self._question(request.session_id)

    async def SubmitAnswer(self, request, context):  # noqa: N802
        await self._enter("SubmitAnswer", request, context)
        if request.idempotency_key in self.by_key:
            return self.by_key[request.idempotency_key]
        session = await self._session(request.session_id, context)
        if session.status == orchestrator_pb2.SESSION_STATUS_FINISHED:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, "the interview is finished")
        current = self._question(request.session_id)
        if request.item_id != current.item_id:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, f"{request.item_id} is not the current question")
        right = request.answer.replace(" ", "").upper() in ('=SUMIF(A2:A4,"EAST",B2:B4)', "1")
        score = common_pb2.Score(
            value=1.0 if right else 0.25,
            confidence=0.9,
            feedback="Correct." if right else "Not quite.",
            criteria=[common_pb2.CriterionResult(name="value", met=right, weight=1.0, detail="B2")],
            evidence=["candidate value 1250 = expected 1250"],
            signals=["core_rs.formula_eval", "triton.answer_scorer"],
            provenance=common_pb2.ScoreProvenance(
                model_name="answer_scorer", model_version="1", backend="triton", code_version="0.1.0"
            ),
        )
        answer_id = f"a{len(session.turns) + 1}"
        submitted = Timestamp()
        submitted.FromSeconds(1_700_000_100)
        session.turns.add(
            answer_id=answer_id,
            item_id=current.item_id,
            item_version=current.item_version,
            prompt=current.prompt,
            answer=request.answer,
            score=score,
            submitted_at=submitted,
        )
        session.overall_score = sum(t.score.value for t in session.turns) / len(session.turns)
        self.positions[request.session_id] += 1
        response = orchestrator_pb2.SubmitAnswerResponse(answer_id=answer_id, score=score)
        if self.positions[request.session_id] < len(QUESTIONS):
            response.next_question.CopyFrom(self._question(request.session_id))
        else:
            response.finished = True
        self.by_key[request.idempotency_key] = response
        return response

    async def GetSession(self, request, context):  # noqa: N802
        await self._enter("GetSession", request, context)
        return await self._session(request.session_id, context)

    async def FinishInterview(self, request, context):  # noqa: N802
        await self._enter("FinishInterview", request, context)
        session = await self._session(request.session_id, context)
        if session.status != orchestrator_pb2.SESSION_STATUS_FINISHED:
            session.status = orchestrator_pb2.SESSION_STATUS_FINISHED
            session.finished_at.FromSeconds(1_700_000_200)
        return session


class FakeServer:
    """The running fake: its servicer, address and health servicer."""

    def __init__(self, servicer: FakeOrchestrator, address: str, health: health.aio.HealthServicer) -> None:
        self.servicer = servicer
        self.address = address
        self.health = health


def free_port() -> int:
    """A port nothing listens on (bound then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
