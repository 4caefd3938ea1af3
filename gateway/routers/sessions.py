"""The candidate's interview session: ``/api/v1/sessions/{session_id}``.

Only a candidate token issued for this very session opens these endpoints; any other
session id is 404, the same as one that does not exist.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, NamedTuple

from fastapi import APIRouter, Depends, Path, Request
from fastapi.responses import Response, StreamingResponse

from common.session_events import (
    ANSWER_SCORED,
    INTERVIEW_FINISHED,
    answer_scored_payload,
    interview_finished_data,
    submit_result_json,
)
from gateway.auth import Principal, Role
from gateway.deps import EventsDep, SettingsDep, limit_ip, orchestrator_client, require
from gateway.events import session_stream
from gateway.orchestrator import OrchestratorClient
from gateway.problems import ProblemError, problem_responses
from gateway.schemas import (
    Question,
    Session,
    SessionStatus,
    SubmitAnswerBody,
    SubmitAnswerResult,
    question_response,
    session_from_proto,
    submit_result_response,
)

router = APIRouter(
    prefix="/api/v1/sessions",
    tags=["sessions"],
    # Every operation can meet a bad request, bad credentials, a failing or unreachable orchestrator.
    responses=problem_responses(400, 401, 403, 404, 422, 429, 500, 502, 503, 504),
)


SESSION_ID_MAX = 128
"""Longest session id the routes accept (longer ones are 422)."""


class OwnSession(NamedTuple):
    """The caller's own session and a client for the orchestrator calls on it.

    Attributes:
        session_id: The path's session id, which the caller's token is bound to.
        orchestrator: Calls with the gateway's deadline and this request's id.
    """

    session_id: str
    orchestrator: OrchestratorClient


_require_candidate = require(Role.CANDIDATE)


async def session_caller(request: Request) -> Principal:
    """The caller, once the per-IP limit is counted, if they hold a candidate token.

    What the ``limit_ip`` dependency the other API routers are included with and
    ``CandidateDep`` do, in the same order, as one dependency: each dependency is a
    pass of FastAPI's ``solve_dependencies``, and these routes serve every step of
    an interview.

    Raises:
        ProblemError: 429 over a limit, 401 without a valid token, 403 for staff.
    """
    await limit_ip(request)
    return await _require_candidate(request)


async def own_session(
    request: Request,
    session_id: Annotated[
        str,
        Path(min_length=1, max_length=SESSION_ID_MAX, description="The session id returned when the invite was accepted."),
    ],
    principal: Annotated[Principal, Depends(session_caller)],
) -> OwnSession:
    """The path's session, if it is the caller's own.

    The orchestrator client comes with it rather than from a dependency of its
    own: every dependency is a pass of FastAPI's ``solve_dependencies``, and each of
    these routes needs both.

    Raises:
        ProblemError: 404 for anyone else's session.
    """
    if session_id != principal.session_id:
        raise ProblemError(404, "not-found", "Not found", f"no interview session {session_id}")
    return OwnSession(session_id, orchestrator_client(request))


OwnSessionDep = Annotated[OwnSession, Depends(own_session)]


@router.get("/{session_id}", response_model=Session, summary="Get the session")
async def get_session(own: OwnSessionDep) -> Session:
    """The session with every turn so far and the overall score."""
    return session_from_proto(await own.orchestrator.get_session(own.session_id))


@router.get(
    "/{session_id}/question", response_model=Question, responses=problem_responses(409), summary="Get the current question"
)
async def get_current_question(own: OwnSessionDep) -> Response:
    """The question the session waits on; 409 once the interview is finished."""
    # The response is encoded here rather than validated into a Question and
    # serialised again by FastAPI (response_model still documents it): this is the
    # page's most frequent call.
    return question_response(await own.orchestrator.get_current_question(own.session_id))


@router.post(
    "/{session_id}/answers",
    response_model=SubmitAnswerResult,
    responses=problem_responses(409),
    summary="Answer the current question",
)
async def submit_answer(own: OwnSessionDep, body: SubmitAnswerBody, events: EventsDep) -> Response:
    """Stores and scores the answer and returns the score and the next question.

    Safe to retry: resending the same ``idempotency_key`` returns the first result.
    After the interview is finished (or cancelled) answers are 409 and nothing is stored.
    The session's event stream gets ``answer_scored`` (this response, with ``item_id``
    and ``idempotency_key``) and ``question_ready`` (the next question).
    """
    session_id = own.session_id
    response = await own.orchestrator.submit_answer(session_id, body.item_id, body.answer, body.idempotency_key)
    result = submit_result_json(response)
    # Encoded first: the event carries the same translation, and a local event bus
    # hands the very dict to the streams.
    reply = submit_result_response(result)
    # One message: the streams announce question_ready from its next question. A retry
    # publishes again: the page keys results by idempotency_key, so a repeat changes
    # nothing there, and a page whose response was lost gets it now.
    await events.publish(session_id, ANSWER_SCORED, answer_scored_payload(result, body.item_id, body.idempotency_key))
    return reply


@router.post("/{session_id}/finish", response_model=Session, responses=problem_responses(409), summary="Finish the interview")
async def finish_interview(own: OwnSessionDep, events: EventsDep) -> Session:
    """Ends the session; finishing twice returns the same session. Event streams of the
    session get ``interview_finished`` and end."""
    finished = await own.orchestrator.finish_interview(own.session_id)
    await events.publish(own.session_id, INTERVIEW_FINISHED, interview_finished_data(finished))
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
async def session_events(own: OwnSessionDep, events: EventsDep, settings: SettingsDep) -> StreamingResponse:
    session_id = own.session_id
    # Read first: an unknown session is a 404 problem, not an empty stream, and the
    # deadline the time warnings count down to is the server's.
    session = session_from_proto(await own.orchestrator.get_session(session_id))
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


