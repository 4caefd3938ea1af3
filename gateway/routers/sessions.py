"""The candidate's interview session: ``/api/v1/sessions/{session_id}``.

Only a candidate token issued for this very session opens these endpoints; any other
session id is 404, the same as one that does not exist.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Path
from fastapi.responses import StreamingResponse

from common.session_events import INTERVIEW_FINISHED, interview_finished_data
from gateway.deps import CandidateDep, EventsDep, OrchestratorDep, SettingsDep
from gateway.events import session_stream
from gateway.problems import ProblemError, problem_responses
from gateway.schemas import (
    Question,
    Session,
    SessionStatus,
    SubmitAnswerBody,
    SubmitAnswerResult,
    question_from_proto,
    session_from_proto,
    submit_result_from_proto,
)

router = APIRouter(
    prefix="/api/v1/sessions",
    tags=["sessions"],
    # Every operation can meet a bad request, bad credentials, a failing or unreachable orchestrator.
    responses=problem_responses(400, 401, 403, 404, 422, 429, 500, 502, 503, 504),
)


async def own_session(
    session_id: Annotated[
        str, Path(min_length=1, max_length=128, description="The session id returned when the invite was accepted.")
    ],
    principal: CandidateDep,
) -> str:
    """The path's session id, if it is the caller's own.

    Raises:
        ProblemError: 404 for anyone else's session.
    """
    if session_id != principal.session_id:
        raise ProblemError(404, "not-found", "Not found", f"no interview session {session_id}")
    return session_id


OwnSession = Annotated[str, Depends(own_session)]


@router.get("/{session_id}", response_model=Session, summary="Get the session")
async def get_session(session_id: OwnSession, orchestrator: OrchestratorDep) -> Session:
    """The session with every turn so far and the overall score."""
    return session_from_proto(await orchestrator.get_session(session_id))


@router.get(
    "/{session_id}/question", response_model=Question, responses=problem_responses(409), summary="Get the current question"
)
async def get_current_question(session_id: OwnSession, orchestrator: OrchestratorDep) -> Question:
    """The question the session waits on; 409 once the interview is finished."""
    return question_from_proto(await orchestrator.get_current_question(session_id))


@router.post(
    "/{session_id}/answers",
    response_model=SubmitAnswerResult,
    responses=problem_responses(409),
    summary="Answer the current question",
)
async def submit_answer(
    session_id: OwnSession, body: SubmitAnswerBody, orchestrator: OrchestratorDep, events: EventsDep
) -> SubmitAnswerResult:
    """Stores and scores the answer and returns the score and the next question.

    Safe to retry: resending the same ``idempotency_key`` returns the first result.
    After the interview is finished (or cancelled) answers are 409 and nothing is stored.
    The session's event stream gets ``answer_scored`` (this response, with ``item_id``
    and ``idempotency_key``) and ``question_ready`` (the next question).
    """
    response = await orchestrator.submit_answer(session_id, body.item_id, body.answer, body.idempotency_key)
    result = submit_result_from_proto(response)
    # A retry publishes again: the page keys results by idempotency_key, so a
    # repeat changes nothing there, and a page whose response was lost gets it now.
    await events.publish(
        session_id,
        "answer_scored",
        {"item_id": body.item_id, "idempotency_key": body.idempotency_key, **result.model_dump(mode="json")},
    )
    if result.next_question is not None:
        await events.publish(session_id, "question_ready", result.next_question.model_dump(mode="json"))
    return result


@router.post("/{session_id}/finish", response_model=Session, responses=problem_responses(409), summary="Finish the interview")
async def finish_interview(session_id: OwnSession, orchestrator: OrchestratorDep, events: EventsDep) -> Session:
    """Ends the session; finishing twice returns the same session. Event streams of the
    session get ``interview_finished`` and end."""
    finished = await orchestrator.finish_interview(session_id)
    await events.publish(session_id, INTERVIEW_FINISHED, interview_finished_data(finished))
    return session_from_proto(finished)


_EVENT_STREAM_DOC = """`text/event-stream` of the session's news, for the candidate page:

* `answer_scored`: an answer's result, the same body the submit endpoint returns, plus
  `item_id` and `idempotency_key`;
* `question_ready`: the next question;
* `time_warning`: `{"seconds_left", "threshold_s", "deadline"}` as the server deadline
  passes each threshold (`XLI_TIME_WARNINGS_S`);
* `time_up`, then the stream ends;
* `interview_finished`: `{"status", "overall_score", "cancelled"}` when the candidate
  finished or the hiring team cancelled the interview (`cancelled` true), then the
  stream ends.

Comment lines keep the connection alive. Works with any number of gateway processes
(the events travel over Redis).
"""


@router.get(
    "/{session_id}/events",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {"schema": {"type": "string"}}}, "description": "The event stream."}},
    summary="Stream the session's events",
    description=_EVENT_STREAM_DOC,
)
async def session_events(
    session_id: OwnSession, orchestrator: OrchestratorDep, events: EventsDep, settings: SettingsDep
) -> StreamingResponse:
    # Read first: an unknown session is a 404 problem, not an empty stream, and the
    # deadline the time warnings count down to is the server's.
    session = session_from_proto(await orchestrator.get_session(session_id))
    # A session past its deadline may still read as in progress until its next call;
    # either way nothing more will happen, and a stream would only say time_up again
    # each time the browser reconnects.
    if session.status == SessionStatus.FINISHED or (session.deadline is not None and session.deadline <= datetime.now(UTC)):
        raise ProblemError(409, "conflict", "Conflict with the interview's state", "the interview is over; it has no more events")
    stream = session_stream(
        events,
        session_id,
        session.deadline,
        settings.time_warnings_s,
        keepalive_s=settings.event_keepalive_s,
        retry_ms=settings.event_retry_ms,
    )
    return StreamingResponse(
        stream,
        media_type="text/event-stream",
        # no-transform and X-Accel-Buffering keep proxies from buffering the stream.
        headers={"Cache-Control": "no-cache, no-transform", "X-Accel-Buffering": "no"},
    )


