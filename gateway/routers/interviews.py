"""REST API v1 for interviews: ``/api/v1/interviews``."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, status

from gateway.deps import OrchestratorDep
from gateway.problems import problem_responses
from gateway.schemas import (
    Question,
    Session,
    StartInterviewBody,
    StartInterviewResult,
    SubmitAnswerBody,
    SubmitAnswerResult,
    question_from_proto,
    session_from_proto,
    start_result_from_proto,
    submit_result_from_proto,
)

router = APIRouter(
    prefix="/api/v1/interviews",
    tags=["interviews"],
    # Every operation can meet a bad request, a failing or unreachable orchestrator.
    responses=problem_responses(400, 422, 500, 502, 503, 504),
)

SessionId = Annotated[
    str,
    Path(min_length=1, max_length=128, description="The session id returned when the interview was started."),
]


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=StartInterviewResult,
    responses=problem_responses(409, 429),
    summary="Start an interview",
)
async def start_interview(body: StartInterviewBody, orchestrator: OrchestratorDep) -> StartInterviewResult:
    """Opens a session for the candidate and returns it with the first question."""
    return start_result_from_proto(await orchestrator.start_interview(body.candidate_name))


@router.get(
    "/{session_id}",
    response_model=Session,
    responses=problem_responses(404),
    summary="Get an interview",
)
async def get_session(session_id: SessionId, orchestrator: OrchestratorDep) -> Session:
    """The session with every turn so far and the overall score."""
    return session_from_proto(await orchestrator.get_session(session_id))


@router.get(
    "/{session_id}/question",
    response_model=Question,
    responses=problem_responses(404, 409),
    summary="Get the current question",
)
async def get_current_question(session_id: SessionId, orchestrator: OrchestratorDep) -> Question:
    """The question the session waits on; 409 once the interview is finished."""
    return question_from_proto(await orchestrator.get_current_question(session_id))


@router.post(
    "/{session_id}/answers",
    response_model=SubmitAnswerResult,
    responses=problem_responses(404, 409, 429),
    summary="Answer the current question",
)
async def submit_answer(session_id: SessionId, body: SubmitAnswerBody, orchestrator: OrchestratorDep) -> SubmitAnswerResult:
    """Stores and scores the answer and returns the score and the next question.

    Safe to retry: resending the same ``idempotency_key`` returns the first result.
    """
    response = await orchestrator.submit_answer(session_id, body.item_id, body.answer, body.idempotency_key)
    return submit_result_from_proto(response)


@router.post(
    "/{session_id}/finish",
    response_model=Session,
    responses=problem_responses(404, 409),
    summary="Finish an interview",
)
async def finish_interview(session_id: SessionId, orchestrator: OrchestratorDep) -> Session:
    """Ends the session; finishing twice returns the same session."""
    return session_from_proto(await orchestrator.finish_interview(session_id))
