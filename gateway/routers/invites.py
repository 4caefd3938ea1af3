"""Candidates enter through invites: ``/api/v1/invites``.

No credentials are needed here: the invite token is the credential. Attempts are
limited per IP like sign-ins, so tokens cannot be guessed at speed.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends

from gateway.admin_schemas import CandidateStart, InviteBody, InvitePreview
from gateway.deps import AdminClientDep, TokensDep, limit_sign_in
from gateway.problems import problem_responses
from gateway.schemas import timestamp_or_none, question_from_proto, session_from_proto
from xlinterview.v1 import admin_pb2

router = APIRouter(
    prefix="/api/v1/invites",
    tags=["invites"],
    dependencies=[Depends(limit_sign_in)],
    responses=problem_responses(400, 404, 409, 422, 429, 503),
)


@router.post("/preview", response_model=InvitePreview, summary="Look at an invite")
async def preview(body: InviteBody, admin: AdminClientDep) -> InvitePreview:
    """Who the invite is for, without using it; 404 unknown, 409 used, expired or cancelled."""
    interview = await admin.interviews("PreviewInvite", admin_pb2.InviteRequest(invite_token=body.invite_token))
    return InvitePreview(
        candidate_name=interview.candidate_name,
        invite_expires_at=timestamp_or_none(interview, "invite_expires_at"),
        time_limit_seconds=interview.time_limit_seconds,
    )


@router.post("/accept", response_model=CandidateStart, summary="Start the interview")
async def accept(body: InviteBody, admin: AdminClientDep, tokens: TokensDep) -> CandidateStart:
    """Uses the invite (once) and starts the interview.

    Returns the first question and a candidate token bound to this interview alone;
    keep it to resume after a reload. A second use of the invite is 409.
    """
    accepted = await admin.interviews("AcceptInvite", admin_pb2.InviteRequest(invite_token=body.invite_token))
    started = accepted.started
    return CandidateStart(
        access_token=tokens.candidate_token(accepted.interview.interview_id, started.session.session_id),
        expires_in=tokens.candidate_ttl_s,
        interview_id=accepted.interview.interview_id,
        session=session_from_proto(started.session),
        question=question_from_proto(started.question) if started.HasField("question") else None,
    )
