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
from datetime import UTC, datetime

import grpc
import redis.asyncio as aioredis
from google.protobuf import json_format
from google.protobuf.timestamp_pb2 import Timestamp
from prometheus_client import Counter
from redis.exceptions import RedisError

from common import session_events
from common.errors import (
    REASON_SCORE_NOT_STORED,
    REASON_SCORING_UNAVAILABLE,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    ServiceError,
    Unavailable,
)
from common.numeric import NotANumber
from orchestrator.adaptive import REASON_FINISH_REQUESTED, AdaptiveEngine, CatRules, cat_items, missed_criterion
from orchestrator.bank import (
    ChoiceItem,
    Item,
    ItemVersion,
    NumericItem,
    follow_up_prompt,
    follow_up_question_id,
    parse_choice_answer,
    parse_numeric_answer,
    to_follow_up_question,
    to_question,
    to_scoring_item,
)
from orchestrator.db import (
    REASON_TIME_LIMIT,
    AnswerRow,
    Database,
    ItemRef,
    SessionRow,
    StoredScore,
    TimeLimitReached,
    Turn,
)
from orchestrator.settings import OrchestratorSettings
from orchestrator.state import SessionState, SessionStateStore
from xlinterview.v1 import common_pb2, orchestrator_pb2, orchestrator_pb2_grpc, scorer_pb2, scorer_pb2_grpc

log = logging.getLogger(__name__)

MAX_CANDIDATE_NAME_CHARS = 200
MAX_IDEMPOTENCY_KEY_CHARS = 200
# Distinct questions kept built (item, position, total); about 2 KB each.
_MAX_CACHED_QUESTIONS = 20_000

SCORING_RESULTS = Counter(
    "xli_orchestrator_scoring_total", "Scorer calls made by the orchestrator", ["outcome"]
)
ANSWERS = Counter("xli_orchestrator_answers_total", "SubmitAnswer outcomes", ["outcome"])

_STATUS = {
    "in_progress": orchestrator_pb2.SESSION_STATUS_IN_PROGRESS,
    "finished": orchestrator_pb2.SESSION_STATUS_FINISHED,
}

SCORING_UNAVAILABLE_MESSAGE = (
    "answer saved; scoring is unavailable right now. It is retried automatically, "
    "or retry with the same idempotency key"
)


EVENT_PUBLISH_ERRORS = Counter(
    "xli_orchestrator_event_publish_errors_total", "Session events that could not be published to the gateway"
)


class SessionEvents:
    """Publishes events to a candidate's live stream, which the gateway serves.

    Only for news no candidate request carries: answers the background retry scored,
    and interviews the hiring team cancelled.
    See :mod:`common.session_events` for the channel and the message format.

    Args:
        redis: The orchestrator's Redis client (shared with the session-state cache).
        timeout_s: Bound on one publish.
    """

    def __init__(self, redis: aioredis.Redis, timeout_s: float) -> None:
        self._redis = redis
        self._timeout_s = timeout_s

    async def publish(self, session_id: str, event: str, data: session_events.Json) -> None:
        """Sends the event; never raises, because the score it reports is already stored
        and the page also finds it by retrying its answer or reloading."""
        try:
            async with asyncio.timeout(self._timeout_s):
                await self._redis.publish(session_events.channel(session_id), session_events.encode(event, data))
        except (RedisError, OSError, TimeoutError) as exc:
            EVENT_PUBLISH_ERRORS.inc()
            log.warning("could not publish %s of session %s: %r", event, session_id, exc)


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


def question_id(ref: ItemRef) -> str:
    """The ``item_id`` the question at ``ref``'s position is asked and answered under."""
    return follow_up_question_id(ref.item_id) if ref.is_follow_up else ref.item_id


def asked_prompt(item: Item, ref: ItemRef | None) -> str:
    """The prompt the candidate answered at ``ref``'s position: a follow-up's own
    question for a follow-up, else the item's prompt.

    Args:
        item: The item asked at that position.
        ref: The session's entry for the position; None when it is missing (only in a
            hand-edited database), which reads as the item itself.
    """
    if ref is not None and ref.is_follow_up:
        return follow_up_prompt(item, ref.criterion)
    return item.prompt


def graded_text(answer: str, original: str | None, max_chars: int) -> str:
    """What the scorer grades for an answer: a follow-up's answer together with the
    answer it follows up (``original``), against the same rubric, so a point made in
    either counts (the engine then weighs what only the follow-up added, see
    :func:`orchestrator.adaptive.follow_up_credit`).

    Args:
        answer: The answer as submitted.
        original: For a follow-up, the answer it follows up; None otherwise.
        max_chars: The longest text the scorer accepts (the answer limit).
    """
    if original is None:
        return answer
    # Both fit the answer limit alone but not always together, and the scorer refuses
    # longer text for good (a retry would never succeed): the original gives way,
    # since the follow-up is what this score is for.
    room = max(0, max_chars - len(answer) - 2)
    return f"{original[:room]}\n\n{answer}"


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
        events: Where answers scored in the background are announced to the
            candidate's page; None announces nothing.
    """

    def __init__(
        self,
        db: Database,
        state: SessionStateStore,
        scorer: scorer_pb2_grpc.ScorerStub,
        bank: Sequence[ItemVersion],
        settings: OrchestratorSettings,
        events: SessionEvents | None = None,
    ) -> None:
        if not bank:
            raise ValueError("the question bank is empty")
        self._db = db
        self._state = state
        self._scorer = scorer
        self._bank = list(bank)
        self._settings = settings
        self._events = events
        # Item versions never change, so a cached one never goes stale.
        self._items: dict[ItemRef, ItemVersion] = {ItemRef(i.item_id, i.version): i for i in bank}
        # Built from immutable item versions, so never stale: a question is kept
        # serialised (parsing it back costs a fraction of building its sample sheet),
        # keyed by its item, position and total.
        self._questions: dict[tuple[ItemRef, int, int], bytes] = {}
        self._scoring_items: dict[ItemRef, common_pb2.ScoringItem] = {}
        self.engine = AdaptiveEngine(
            self._bank,
            CatRules(
                max_items=settings.cat_max_items,
                min_items=settings.cat_min_items,
                se_target=settings.cat_se_target,
                max_exposure=settings.cat_max_exposure,
            ),
        )
        self._exposure_restored = False
        self._exposure_lock = asyncio.Lock()

    # -- helpers ------------------------------------------------------------------------

    async def _restore_exposure(self) -> None:
        # Lazily, once: the exposure history is a start-up read that must not block serving.
        async with self._exposure_lock:
            if not self._exposure_restored:
                self.engine.restore_exposure(*await self._db.exposure_counts())
                self._exposure_restored = True

    async def _finished(self, row: SessionRow, changed: bool, turns: Sequence[Turn] | None = None) -> None:
        """Bookkeeping once a session is finished: exposure counts (once) and its result
        (from ``turns`` when the caller has just read them)."""
        if changed:
            self.engine.record_finished(row)
        await self._store_result(row, turns)

    async def _store_result(self, row: SessionRow, turns: Sequence[Turn] | None = None) -> None:
        if turns is None:
            turns = await self._db.turns(row.session_id)
        await self._db.store_result(row.session_id, self.engine.result(row, turns))

    async def refresh_result(self, session_id: uuid.UUID) -> bool:
        """Computes a finished session's result again from its current scores and stores
        it if it changed (a reviewer's grade replaced a score); an unfinished session's
        result is computed when it finishes, from the scores current then.

        Args:
            session_id: The session.

        Returns:
            Whether the session is finished (and its result was refreshed).

        Raises:
            NotFound: When there is no such session.
        """
        row = await self._db.get_session(session_id)
        if row is None:
            raise NotFound(f"no interview session {session_id}")
        if not row.finished:
            return False
        await self._store_result(row)
        return True

    async def item_version(self, ref: ItemRef) -> ItemVersion:
        """The stored item version ``ref`` names (cached: versions never change).

        Raises:
            Unavailable: When it is not stored (a hand-edited database) or the database
                cannot be read.
        """
        return await self._item(ref)

    @staticmethod
    def _expired(deadline: datetime | None) -> bool:
        return deadline is not None and datetime.now(UTC) > deadline

    async def _advance(self, row: SessionRow, turns: Sequence[Turn] | None = None) -> SessionRow:
        """Chooses the question after the last answer, or finishes the session.

        Runs after every answer and whenever a reader finds a session waiting for
        its next question (after a crash between storing an answer and choosing), so
        a session always continues where it was. The decision uses the scores stored
        so far; an answer still waiting for its score is left out.

        Args:
            row: The session.
            turns: Its turns as read just now (with the score just stored), or None
                to read them; used for the first decision only.
        """
        while row.awaiting_selection:
            if turns is None:
                turns = await self._db.turns(row.session_id)
            if self._expired(row.deadline):
                next_item, reason = None, REASON_TIME_LIMIT
            else:
                next_item, reason = await self._follow_up(row, turns), None
                if next_item is None:
                    next_item, reason = self.engine.decide(row, turns)
            answered = row.position
            row, applied = await self._db.advance(row.session_id, answered, next_item, reason)
            await self._state.put(SessionState.from_row(row))
            if row.finished:
                await self._finished(row, changed=applied, turns=turns)
            if row.position != answered:
                break  # another request answered meanwhile; it advances on its own
            turns = None  # a decision of another request came first: read again
        return row

    async def _follow_up(self, row: SessionRow, turns: Sequence[Turn]) -> ItemRef | None:
        """The follow-up on the last answer, if it missed a criterion that matters.

        Decided once, like every next question: the choice is stored in the session's
        items, so replays, reloads and restarts ask the same follow-up. A follow-up
        gets none of its own, which bounds follow-ups to one per item; an answer still
        waiting for its score gets none either.
        """
        if not row.items or row.position != len(row.items):
            return None
        last = row.items[-1]
        if last.is_follow_up:
            return None
        scored = next((t for t in turns if t.answer.position == len(row.items) - 1), None)
        if scored is None or scored.score is None:
            return None
        item = (await self._item(last)).item
        criterion = missed_criterion(item, scored.score, self._settings.follow_up_min_weight)
        if criterion is None:
            return None
        return ItemRef(last.item_id, last.version, follow_up_of=len(row.items) - 1, criterion=criterion.name)

    async def _expire(self, row: SessionRow) -> SessionRow:
        """Finishes a session whose time is up."""
        finished = await self._db.finish_session(row.session_id, REASON_TIME_LIMIT)
        await self._state.put(SessionState.from_row(finished))
        await self._finished(finished, changed=not row.finished and finished.stop_reason == REASON_TIME_LIMIT)
        return finished

    async def _item(self, ref: ItemRef) -> ItemVersion:
        ref = ref.version_ref
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

    async def _question(self, items: Sequence[ItemRef], index: int, max_items: int) -> orchestrator_pb2.Question:
        # Positions and the total count the engine's items: a follow-up shares its
        # original's number ("question 4 of 12, follow-up").
        total = max(max_items or self._settings.cat_max_items, cat_items(items))
        ref = items[index]
        position = cat_items(items[:index]) if ref.is_follow_up else cat_items(items[: index + 1])
        key = (ref, position, total)
        built = self._questions.get(key)
        if built is None:
            stored = await self._item(ref)
            if ref.is_follow_up:
                question = to_follow_up_question(stored, ref.criterion, position=position, total=total)
            else:
                question = to_question(stored, position=position, total=total)
            if len(self._questions) >= _MAX_CACHED_QUESTIONS:
                self._questions.clear()
            self._questions[key] = built = question.SerializeToString()
        return orchestrator_pb2.Question.FromString(built)

    async def _scoring_item(self, ref: ItemRef) -> common_pb2.ScoringItem:
        """What the scorer grades an answer to ``ref`` against; shared, so never mutated."""
        ref = ref.version_ref
        built = self._scoring_items.get(ref)
        if built is None:
            self._scoring_items[ref] = built = to_scoring_item(await self._item(ref))
        return built

    async def _session_message(self, row: SessionRow, *, with_turns: bool = True) -> orchestrator_pb2.Session:
        message = orchestrator_pb2.Session(
            session_id=str(row.session_id),
            candidate_name=row.candidate_name,
            status=_STATUS.get(row.status, orchestrator_pb2.SESSION_STATUS_UNSPECIFIED),
            started_at=_timestamp(row.started_at),
        )
        if row.finished_at is not None:
            message.finished_at.CopyFrom(_timestamp(row.finished_at))
        if row.deadline is not None:
            message.deadline.CopyFrom(_timestamp(row.deadline))
        if not with_turns:
            return message
        if row.finished:
            stored = await self._db.latest_result(row.session_id)
            if stored is not None:
                json_format.ParseDict(stored, message.result, ignore_unknown_fields=True)
        values = []
        for turn in await self._db.turns(row.session_id):
            answer = turn.answer
            item = (await self._item(ItemRef(answer.item_id, answer.item_version))).item
            ref = row.items[answer.position] if answer.position < len(row.items) else None
            follow_up = ref is not None and ref.is_follow_up
            out = message.turns.add(
                answer_id=str(answer.answer_id),
                item_id=answer.item_id,
                item_version=answer.item_version,
                prompt=asked_prompt(item, ref),
                answer=answer.answer,
                submitted_at=_timestamp(answer.submitted_at),
                follow_up=follow_up,
                skill_area=item.skill_area,
            )
            if turn.score is not None:
                out.score.CopyFrom(turn.score)
                if not follow_up:
                    # One value per question; a follow-up's credit shows in the ability estimate.
                    values.append(turn.score.value)
        message.overall_score = sum(values) / len(values) if values else 0.0
        return message

    async def _answer_response(
        self, answer: AnswerRow, score: common_pb2.Score, session: SessionRow
    ) -> orchestrator_pb2.SubmitAnswerResponse:
        """What SubmitAnswer returns for ``answer``, once ``session`` has advanced past it."""
        # Derived from the answer's own position, so a replay returns what the first call did.
        next_index = answer.position + 1
        response = orchestrator_pb2.SubmitAnswerResponse(answer_id=str(answer.answer_id), score=score)
        if next_index < len(session.items):
            response.next_question.CopyFrom(await self._question(session.items, next_index, session.max_items))
        else:
            response.finished = session.finished
        return response

    async def _scored_text(self, answer: AnswerRow, session: SessionRow) -> str:
        """What the scorer grades for ``answer`` (see :func:`graded_text`)."""
        ref = session.items[answer.position] if answer.position < len(session.items) else None
        if ref is None or ref.follow_up_of is None:
            return answer.answer
        original = next(
            (t.answer for t in await self._db.turns(answer.session_id) if t.answer.position == ref.follow_up_of), None
        )
        if original is None:
            # Follow-ups are only ever chosen after their original answer is stored.
            log.error("answer %s follows up position %d, which has no answer", answer.answer_id, ref.follow_up_of)
            return answer.answer
        return graded_text(answer.answer, original.answer, self._settings.max_answer_chars)

    async def _score(self, answer: AnswerRow, session: SessionRow) -> StoredScore:
        """Grades a stored answer and stores the grade (the first stored grade wins).

        Args:
            answer: The stored answer.
            session: Its session (it tells whether the answer is to a follow-up).

        Returns:
            The stored grade, and the session's turns read with it.

        Raises:
            Unavailable: When the scorer fails or the grade cannot be stored; the
                answer stays stored and a retry with the same key scores it. It carries
                reason ``SCORING_UNAVAILABLE`` or ``SCORE_NOT_STORED`` and the answer id.
        """
        request = scorer_pb2.ScoreRequest(
            item=await self._scoring_item(ItemRef(answer.item_id, answer.item_version)),
            answer=scorer_pb2.AnswerInput(answer_id=str(answer.answer_id), text=await self._scored_text(answer, session)),
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
            raise Unavailable(
                SCORING_UNAVAILABLE_MESSAGE,
                reason=REASON_SCORING_UNAVAILABLE,
                metadata={"answer_id": str(answer.answer_id)},
            ) from exc
        SCORING_RESULTS.labels("ok").inc()
        try:
            return await self._db.store_first_score(answer.session_id, answer.answer_id, response.score)
        except Unavailable as exc:
            raise Unavailable(
                "answer saved; its score could not be stored right now, retry with the same idempotency key",
                reason=REASON_SCORE_NOT_STORED,
                metadata={"answer_id": str(answer.answer_id)},
            ) from exc

    async def retry_unscored(self, limit: int = 50) -> int:
        """Scores stored answers whose scoring failed, oldest first.

        A scorer outage leaves answers stored without a score; this gives each one
        its score and lets its session move on (or, if it has finished, updates its
        result), whether or not the candidate ever retries. The sweep stops at the
        first failure: the scorer or the database is still down, and the next sweep
        tries again.

        Args:
            limit: Most answers looked at in one sweep.

        Returns:
            How many answers got a score.
        """
        pending = await self._db.unscored_answers(
            older_than_s=self._settings.scorer_deadline_s + 2.0,
            within_s=self._settings.scoring_retry_window_s,
            limit=limit,
        )
        scored = 0
        for answer in pending:
            session = await self._db.get_session(answer.session_id)
            if session is None:
                continue  # answers reference their session; only a hand-edited database gets here
            try:
                stored = await self._score(answer, session)
            except Unavailable:
                break
            scored += 1
            SCORING_RESULTS.labels("retried_ok").inc()
            session = await self._db.get_session(answer.session_id) or session
            if session.finished:
                await self._store_result(session, stored.turns)
            else:
                session = await self._advance(session, stored.turns)
            await self._announce_scored(answer, stored.score, session)
        return scored

    async def announce_cancelled(self, session: orchestrator_pb2.Session) -> None:
        """Tells the candidate's page that the hiring team cancelled the interview, which
        finished ``session``: no request of the candidate's carries that news. Never raises."""
        if self._events is not None:
            await self._events.publish(
                session.session_id,
                session_events.INTERVIEW_FINISHED,
                session_events.interview_finished_data(session, cancelled=True),
            )

    async def _announce_scored(self, answer: AnswerRow, score: common_pb2.Score, session: SessionRow) -> None:
        """Tells the candidate's page that a background retry scored ``answer``.

        The page may still wait on this answer (its request got "scoring
        unavailable"); it completes the answer with exactly what a retry with the same
        key would return. Never raises: the score is stored whether or not anyone hears.
        """
        if self._events is None:
            return
        try:
            response = await self._answer_response(answer, score, session)
        except ServiceError as exc:
            EVENT_PUBLISH_ERRORS.inc()
            log.warning("answer %s was scored but its event could not be built: %s", answer.answer_id, exc)
            return
        await self._events.publish(
            str(answer.session_id),
            session_events.ANSWER_SCORED,
            session_events.answer_scored_data(
                response, question_id(session.items[answer.position]), answer.idempotency_key
            ),
        )

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
        extra = request.extra_time_percent
        if not 0 <= extra <= self._settings.max_extra_time_percent:
            raise InvalidArgument(
                f"extra_time_percent must be between 0 and {self._settings.max_extra_time_percent}"
            )
        await self._restore_exposure()
        seed, ineligible, first = self.engine.plan()
        row = await self._db.create_session(
            uuid.uuid4(),
            name,
            first,
            cat_seed=seed,
            ineligible=ineligible,
            time_limit_s=self._settings.interview_time_limit_s,
            extra_time_percent=extra,
            max_items=self._settings.cat_max_items,
        )
        await self._state.put(SessionState.from_row(row))
        log.info("interview %s started (up to %d questions)", row.session_id, row.max_items)
        return orchestrator_pb2.StartInterviewResponse(
            session=await self._session_message(row, with_turns=False),
            question=await self._question(row.items, 0, row.max_items),
        )

    async def GetCurrentQuestion(
        self, request: orchestrator_pb2.GetCurrentQuestionRequest, context: grpc.aio.ServicerContext
    ) -> orchestrator_pb2.Question:
        session_id = parse_session_id(request.session_id)
        state = await self._state.get(session_id)
        if state is None:
            raise NotFound(f"no interview session {session_id}")
        if not state.finished and (self._expired(state.deadline) or state.awaiting_selection):
            row = await self._db.get_session(session_id)
            if row is None:
                raise NotFound(f"no interview session {session_id}")
            row = await self._expire(row) if self._expired(row.deadline) else await self._advance(row)
            state = SessionState.from_row(row)
        if state.finished:
            raise FailedPrecondition("the interview is finished; there is no current question")
        return await self._question(state.items, state.position, state.max_items)

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
            if request.item_id != question_id(current):
                raise FailedPrecondition(
                    f"item {request.item_id!r} is not the current question (the current question "
                    f"is {question_id(current)!r})"
                )
            item = (await self._item(current)).item
            if isinstance(item, ChoiceItem) and parse_choice_answer(item, answer) is None:
                raise InvalidArgument(
                    f"a multiple-choice answer is an option index from 0 to {len(item.choice.options) - 1}"
                )
            if isinstance(item, NumericItem):
                try:
                    parse_numeric_answer(item, answer)
                except NotANumber as exc:
                    raise InvalidArgument(f"a numeric answer must be a number: {exc}") from None

        try:
            result = await self._db.submit_answer(session_id, key, answer, check)
        except TimeLimitReached:
            ANSWERS.labels("too_late").inc()
            row = await self._db.get_session(session_id)
            if row is not None:
                await self._state.put(SessionState.from_row(row))
                await self._finished(row, changed=True)
            raise
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
            # A retry returns the first result, even after a reviewer graded the answer.
            score = await self._db.first_score(stored.answer_id)
        else:
            ANSWERS.labels("stored").inc()
            await self._state.put(SessionState.from_row(result.session))
            score = None
        session = result.session
        turns = None
        if score is None:
            # A failure here leaves the session waiting for its next question; the next
            # GetCurrentQuestion (or this key's retry) chooses it.
            scored = await self._score(stored, session)
            score, turns = scored.score, scored.turns
            if session.finished:
                # A late score (a retry after a scorer outage) changes the finished result.
                await self._store_result(session, turns)
        # A session that finished while this answer was scored (time limit, the hiring
        # team) is found finished by advancing, which stores its result with this score.
        session = await self._advance(session, turns)
        return await self._answer_response(stored, score, session)

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
        before = await self._db.get_session(session_id)
        row = await self._db.finish_session(session_id, REASON_FINISH_REQUESTED)
        await self._state.put(SessionState.from_row(row))
        await self._finished(row, changed=before is not None and not before.finished)
        return await self._session_message(row)
