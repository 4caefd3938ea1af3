"""The candidate's interview session: ``/api/v1/sessions/{session_id}``.

Only a candidate token issued for this very session opens these endpoints; any other
session id is 404, the same as one that does not exist.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path

from gateway.deps import CandidateDep, OrchestratorDep
from gateway.problems import ProblemError, problem_responses
from gateway.schemas import (
    Question,
    Session,
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


def own_session(
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
async def submit_answer(session_id: OwnSession, body: SubmitAnswerBody, orchestrator: OrchestratorDep) -> SubmitAnswerResult:
    """Stores and scores the answer and returns the score and the next question.

    Safe to retry: resending the same ``idempotency_key`` returns the first result.
    After the interview is finished (or cancelled) answers are 409 and nothing is stored.
    """
    response = await orchestrator.submit_answer(session_id, body.item_id, body.answer, body.idempotency_key)
    return submit_result_from_proto(response)


@router.post("/{session_id}/finish", response_model=Session, responses=problem_responses(409), summary="Finish the interview")
async def finish_interview(session_id: OwnSession, orchestrator: OrchestratorDep) -> Session:
    """Ends the session; finishing twice returns the same session."""
    return session_from_proto(await orchestrator.finish_interview(session_id))


