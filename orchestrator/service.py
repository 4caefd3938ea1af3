"""The Orchestrator gRPC service: runs interviews over the item bank.

Writes go to PostgreSQL first; the scorer is called only after the answer is
committed, so a scorer outage never loses an answer and a score is never invented.
"""

from __future__ import annotations

import asyncio
import logging
import math
import uuid
from collections.abc import Sequence

import grpc
from google.protobuf.timestamp_pb2 import Timestamp
from prometheus_client import Counter

from common.errors import FailedPrecondition, InvalidArgument, NotFound, Unavailable
from orchestrator.bank import ChoiceItem, ItemVersion, parse_choice_answer, to_question, to_scoring_item
from orchestrator.db import AnswerRow, Database, ItemRef, SessionRow
from orchestrator.settings import OrchestratorSettings
from orchestrator.state import SessionState, SessionStateStore
from xlinterview.v1 import common_pb2, orchestrator_pb2, orchestrator_pb2_grpc, scorer_pb2, scorer_pb2_grpc

log = logging.getLogger(__name__)

MAX_CANDIDATE_NAME_CHARS = 200
MAX_IDEMPOTENCY_KEY_CHARS = 200

SCORING_RESULTS = Counter(
    "xli_orchestrator_scoring_total", "Scorer calls made by the orchestrator", ["outcome"]
)
ANSWERS = Counter("xli_orchestrator_answers_total", "SubmitAnswer outcomes", ["outcome"])

_STATUS = {
    "in_progress": orchestrator_pb2.SESSION_STATUS_IN_PROGRESS,
    "finished": orchestrator_pb2.SESSION_STATUS_FINISHED,
}

SCORING_UNAVAILABLE = (
    "answer saved; scoring is unavailable right now, retry with the same idempotency key"
)


def parse_session_id(raw: str) -> uuid.UUID:
    """Parses a session id.

    Raises:
        InvalidArgument: When it is empty or not a UUID.
    """
    if not raw:
        raise InvalidArgument("session_id is required")
    try:
        return uuid.UUID(raw)
    except ValueError:
        raise InvalidArgument(f"session_id {raw[:64]!r} is not a UUID") from None


def _timestamp(value) -> Timestamp:  # type: ignore[no-untyped-def]
    ts = Timestamp()
    ts.FromDatetime(value)
    return ts


def _check_score(score: common_pb2.Score) -> None:
    for name in ("value", "confidence"):
        number = getattr(score, name)
        if not (math.isfinite(number) and 0.0 <= number <= 1.0):
            raise ValueError(f"score {name} {number!r} is outside 0..1")


class OrchestratorService(orchestrator_pb2_grpc.OrchestratorServicer):
    """Implements ``xlinterview.v1.Orchestrator``.

    Args:
        db: The source of truth.
        state: Session state cache in front of ``db``.
        scorer: Stub of the Scorer service.
        bank: The current item versions, in interview order.
        settings: Limits and deadlines.
    """

    def __init__(
        self,
        db: Database,
        state: SessionStateStore,
        scorer: scorer_pb2_grpc.ScorerStub,
        bank: Sequence[ItemVersion],
        settings: OrchestratorSettings,
    ) -> None:
        if not bank:
            raise ValueError("the question bank is empty")
        self._db = db
        self._state = state
        self._scorer = scorer
        self._bank = list(bank)
        self._settings = settings
        # Item versions never change, so a cached one never goes stale.
        self._items: dict[ItemRef, ItemVersion] = {ItemRef(i.item_id, i.version): i for i in bank}

    # -- helpers ------------------------------------------------------------------------

    def interview_plan(self) -> list[ItemRef]:
        """The items a new interview asks, in order.

        The adaptive engine replaces this fixed plan with per-answer selection.
        """
        return [ItemRef(i.item_id, i.version) for i in self._bank]

    async def _item(self, ref: ItemRef) -> ItemVersion:
        cached = self._items.get(ref)
        if cached is not None:
            return cached
        stored = await self._db.get_item(ref)
        if stored is None:
            # A session pointing at a missing item means the database was edited by hand.
            log.error("item %s version %d is referenced but not stored", ref.item_id, ref.version)
            raise Unavailable(f"item {ref.item_id} v{ref.version} is missing; the interview cannot continue")
        self._items[ref] = stored
        return stored

    async def _question(self, items: Sequence[ItemRef], index: int) -> orchestrator_pb2.Question:
        return to_question(await self._item(items[index]), position=index + 1, total=len(items))

    async def _session_message(self, row: SessionRow, *, with_turns: bool = True) -> orchestrator_pb2.Session:
        message = orchestrator_pb2.Session(
            session_id=str(row.session_id),
            candidate_name=row.candidate_name,
            status=_STATUS.get(row.status, orchestrator_pb2.SESSION_STATUS_UNSPECIFIED),
            started_at=_timestamp(row.started_at),
        )
        if row.finished_at is not None:
            message.finished_at.CopyFrom(_timestamp(row.finished_at))
        if not with_turns:
            return message
        values = []
        for turn in await self._db.turns(row.session_id):
            answer = turn.answer
            item = await self._item(ItemRef(answer.item_id, answer.item_version))
            out = message.turns.add(
                answer_id=str(answer.answer_id),
                item_id=answer.item_id,
                item_version=answer.item_version,
                prompt=item.item.prompt,
                answer=answer.answer,
                submitted_at=_timestamp(answer.submitted_at),
            )
            if turn.score is not None:
                out.score.CopyFrom(turn.score)
                values.append(turn.score.value)
        message.overall_score = sum(values) / len(values) if values else 0.0
        return message

    async def _score(self, answer: AnswerRow) -> common_pb2.Score:
        """Grades a stored answer and stores the grade (the first stored grade wins).

        Raises:
            Unavailable: When the scorer fails or the grade cannot be stored; the
                answer stays stored and a retry with the same key scores it.
        """
        item = await self._item(ItemRef(answer.item_id, answer.item_version))
        request = scorer_pb2.ScoreRequest(
            item=to_scoring_item(item),
            answer=scorer_pb2.AnswerInput(answer_id=str(answer.answer_id), text=answer.answer),
        )
        deadline = self._settings.scorer_deadline_s
        try:
            # The outer timeout is a backstop in case the channel ignores the deadline.
            async with asyncio.timeout(deadline + 1.0):
                response = await self._scorer.Score(request, timeout=deadline)
            _check_score(response.score)
        except (grpc.RpcError, TimeoutError, ValueError) as exc:
            reason = exc.code().name if isinstance(exc, grpc.aio.AioRpcError) else type(exc).__name__
            detail = exc.details() if isinstance(exc, grpc.aio.AioRpcError) else str(exc)
            SCORING_RESULTS.labels(reason.lower()).inc()
            log.warning("scoring answer %s failed: %s %s", answer.answer_id, reason, detail)
            await self._db.audit(
                answer.session_id, "scoring_failed", {"answer_id": str(answer.answer_id), "reason": reason}
            )
            raise Unavailable(SCORING_UNAVAILABLE) from exc
        SCORING_RESULTS.labels("ok").inc()
        try:
            return await self._db.store_first_score(answer.session_id, answer.answer_id, response.score)
        except Unavailable as exc:
            raise Unavailable(
                "answer saved; its score could not be stored right now, retry with the same idempotency key"
            ) from exc

    # -- RPCs ---------------------------------------------------------------------------

    async def StartInterview(
        self, request: orchestrator_pb2.StartInterviewRequest, context: grpc.aio.ServicerContext
    ) -> orchestrator_pb2.StartInterviewResponse:
        name = request.candidate_name.strip()
        if not name:
            raise InvalidArgument("candidate_name is required")
        if len(name) > MAX_CANDIDATE_NAME_CHARS:
            raise InvalidArgument(f"candidate_name is longer than {MAX_CANDIDATE_NAME_CHARS} characters")
        if any(ord(ch) < 32 for ch in name):
            raise InvalidArgument("candidate_name must not contain control characters")
        plan = self.interview_plan()
        row = await self._db.create_session(uuid.uuid4(), name, plan)
        await self._state.put(SessionState.from_row(row))
        log.info("interview %s started with %d questions", row.session_id, len(plan))
        return orchestrator_pb2.StartInterviewResponse(
            session=await self._session_message(row, with_turns=False),
            question=await self._question(row.items, 0),
        )

    async def GetCurrentQuestion(
        self, request: orchestrator_pb2.GetCurrentQuestionRequest, context: grpc.aio.ServicerContext
    ) -> orchestrator_pb2.Question:
        session_id = parse_session_id(request.session_id)
        state = await self._state.get(session_id)
        if state is None:
            raise NotFound(f"no interview session {session_id}")
        if state.finished:
            raise FailedPrecondition("the interview is finished; there is no current question")
        return await self._question(state.items, state.position)

    async def SubmitAnswer(
        self, request: orchestrator_pb2.SubmitAnswerRequest, context: grpc.aio.ServicerContext
    ) -> orchestrator_pb2.SubmitAnswerResponse:
        session_id = parse_session_id(request.session_id)
        key = request.idempotency_key
        if not key.strip():
            raise InvalidArgument("idempotency_key is required (e.g. a UUID chosen by the client)")
        if len(key) > MAX_IDEMPOTENCY_KEY_CHARS:
            raise InvalidArgument(f"idempotency_key is longer than {MAX_IDEMPOTENCY_KEY_CHARS} characters")
        if not request.item_id:
            raise InvalidArgument("item_id is required")
        answer = request.answer
        if not answer.strip():
            raise InvalidArgument("answer is empty")
        if len(answer) > self._settings.max_answer_chars:
            raise InvalidArgument(f"answer is longer than {self._settings.max_answer_chars} characters")

        async def check(session: SessionRow) -> None:
            current = session.items[session.position]
            if request.item_id != current.item_id:
                raise FailedPrecondition(
                    f"item {request.item_id!r} is not the current question (question "
                    f"{session.position + 1} is {current.item_id!r})"
                )
            item = (await self._item(current)).item
            if isinstance(item, ChoiceItem) and parse_choice_answer(item, answer) is None:
                raise InvalidArgument(
                    f"a multiple-choice answer is an option index from 0 to {len(item.choice.options) - 1}"
                )

        try:
            result = await self._db.submit_answer(session_id, key, answer, check)
        except FailedPrecondition:
            ANSWERS.labels("refused").inc()
            # The client acted on a view that PostgreSQL disagrees with; the cached
            # state may be what misled it, so drop it.
            await self._state.invalidate(session_id)
            raise
        stored = result.answer
        if result.replayed:
            ANSWERS.labels("replayed").inc()
            log.info("answer %s replayed for idempotency key", stored.answer_id)
            score = await self._db.latest_score(stored.answer_id)
        else:
            ANSWERS.labels("stored").inc()
            await self._state.put(SessionState.from_row(result.session))
            score = None
        if score is None:
            score = await self._score(stored)

        # Derived from the answer's own position, so a replay returns what the first call did.
        items = result.session.items
        next_index = stored.position + 1
        response = orchestrator_pb2.SubmitAnswerResponse(
            answer_id=str(stored.answer_id), score=score, finished=next_index >= len(items)
        )
        if next_index < len(items):
            response.next_question.CopyFrom(await self._question(items, next_index))
        return response

    async def GetSession(
        self, request: orchestrator_pb2.GetSessionRequest, context: grpc.aio.ServicerContext
    ) -> orchestrator_pb2.Session:
        session_id = parse_session_id(request.session_id)
        row = await self._db.get_session(session_id)
        if row is None:
            raise NotFound(f"no interview session {session_id}")
        return await self._session_message(row)

    async def FinishInterview(
        self, request: orchestrator_pb2.FinishInterviewRequest, context: grpc.aio.ServicerContext
    ) -> orchestrator_pb2.Session:
        session_id = parse_session_id(request.session_id)
        row = await self._db.finish_session(session_id)
        await self._state.put(SessionState.from_row(row))
        return await self._session_message(row)
