"""Interviews, for staff: ``/api/v1/interviews``.

Admins see every interview, analysts read every interview, interviewers create
interviews and see only their own. Candidates use ``/api/v1/invites`` and
``/api/v1/sessions`` instead.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, status

from gateway.admin_schemas import CreateInterviewBody, Interview, InvitedInterview, interview_from_proto
from gateway.deps import AdminClientDep, OwnedInterviewDep, SettingsDep, StaffDep, WriterDep
from gateway.problems import problem_responses
from gateway.settings import GatewaySettings
from xlinterview.v1 import admin_pb2

router = APIRouter(
    prefix="/api/v1/interviews",
    tags=["interviews"],
    responses=problem_responses(400, 401, 403, 422, 429, 500, 502, 503, 504),
)


def invite_url(settings: GatewaySettings, request: Request, token: str) -> str:
    """The link a candidate opens. The token rides in the fragment, which browsers
    never send to servers, so it stays out of access logs and proxies."""
    base = settings.public_url.rstrip("/") or str(request.base_url).rstrip("/")
    return f"{base}/#invite={token}"


def _invited(settings: GatewaySettings, request: Request, invited: admin_pb2.InvitedInterview) -> InvitedInterview:
    return InvitedInterview(
        interview=interview_from_proto(invited.interview), invite_url=invite_url(settings, request, invited.invite_token)
    )


@router.post("", status_code=status.HTTP_201_CREATED, response_model=InvitedInterview, summary="Create an interview")
async def create_interview(
    body: CreateInterviewBody, principal: WriterDep, admin: AdminClientDep, settings: SettingsDep, request: Request
) -> InvitedInterview:
    """Creates an interview owned by the caller, with a one-time invite link.

    ``extra_time_percent`` grants the candidate extra time (an accommodation); the
    session the invite starts gets a deadline that includes it. Over the
    orchestrator's maximum is 400.
    """
    invited = await admin.interviews(
        "CreateInterview",
        admin_pb2.CreateInterviewRequest(
            candidate_name=body.candidate_name,
            candidate_email=body.candidate_email,
            owner_user_id=principal.user_id,
            invite_ttl_seconds=(body.invite_ttl_hours or 0) * 3600,
            extra_time_percent=body.extra_time_percent,
        ),
    )
    return _invited(settings, request, invited)


@router.get("", response_model=list[Interview], summary="List interviews")
async def list_interviews(
    principal: StaffDep,
    admin: AdminClientDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> list[Interview]:
    """Newest first, with status and score; an interviewer sees only their own."""
    response = await admin.interviews(
        "ListInterviews", admin_pb2.ListInterviewsRequest(owner_user_id=principal.owner_filter(), limit=limit)
    )
    return [interview_from_proto(i) for i in response.interviews]


@router.get("/{interview_id}", response_model=Interview, responses=problem_responses(404), summary="Get an interview")
async def get_interview(interview: OwnedInterviewDep) -> Interview:
    """The interview with its status and score."""
    return interview_from_proto(interview)


@router.post(
    "/{interview_id}/invite",
    response_model=InvitedInterview,
    responses=problem_responses(404, 409),
    summary="Re-issue the invite link",
)
async def reissue_invite(
    interview: OwnedInterviewDep, principal: WriterDep, admin: AdminClientDep, settings: SettingsDep, request: Request
) -> InvitedInterview:
    """A new link for an interview not started yet; the previous link stops working."""
    invited = await admin.interviews("ReissueInvite", admin_pb2.InterviewRequest(interview_id=interview.interview_id))
    return _invited(settings, request, invited)


@router.post(
    "/{interview_id}/cancel", response_model=Interview, responses=problem_responses(404, 409), summary="Cancel an interview"
)
async def cancel_interview(interview: OwnedInterviewDep, principal: WriterDep, admin: AdminClientDep) -> Interview:
    """The invite stops working and a session in progress ends; cancelling twice is harmless."""
    cancelled = await admin.interviews("CancelInterview", admin_pb2.InterviewRequest(interview_id=interview.interview_id))
    return interview_from_proto(cancelled)
