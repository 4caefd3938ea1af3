"""The review queue, for staff: ``/api/v1/reviews``.

Answers whose score the scorer flagged wait here for a person, least confident first;
a reviewer's grade becomes the answer's current score (the orchestrator's ``Reviews``
service). Admins and analysts see every interview's answers, interviewers their own;
admins and interviewers grade, analysts only read.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query

from gateway.admin_schemas import ReviewBody, ReviewQueue, ReviewTask, review_task_from_proto
from gateway.deps import AdminClientDep, StaffDep, WriterDep
from gateway.problems import problem_responses
from xlinterview.v1 import admin_pb2

router = APIRouter(
    prefix="/api/v1/reviews",
    tags=["reviews"],
    responses=problem_responses(400, 401, 403, 422, 429, 500, 502, 503, 504),
)

# Answer ids are UUIDs; anything else is refused here rather than by a round trip.
AnswerId = Annotated[
    str,
    Path(
        pattern=r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$",
        description="The answer's id (a turn's or review task's answer_id).",
    ),
]


@router.get("", response_model=ReviewQueue, summary="List the answers waiting for review")
async def list_review_queue(
    principal: StaffDep, admin: AdminClientDep, limit: Annotated[int, Query(ge=1, le=500)] = 50
) -> ReviewQueue:
    """Answers whose current score needs a human check, least confident first (what the
    model is least sure of teaches it most), then oldest first; ``pending`` counts them all."""
    response = await admin.reviews(
        "ListReviewQueue", admin_pb2.ListReviewQueueRequest(owner_user_id=principal.owner_filter(), limit=limit)
    )
    return ReviewQueue(tasks=[review_task_from_proto(t) for t in response.tasks], pending=response.pending)


@router.post(
    "/{answer_id}", response_model=ReviewTask, responses=problem_responses(404, 409), summary="Grade an answer"
)
async def submit_review(answer_id: AnswerId, body: ReviewBody, principal: WriterDep, admin: AdminClientDep) -> ReviewTask:
    """Stores the caller's grade as the answer's current score (signal ``human.review``).

    Any scored answer may be graded, flagged or not; a later grade replaces an earlier
    one. A finished interview's result is computed again. 404 when the answer does not
    exist or is not in one of the caller's interviews, 409 while it has no score yet,
    422 for an id that is not a UUID or a grade outside 0..1.
    """
    task = await admin.reviews(
        "SubmitReview",
        admin_pb2.SubmitReviewRequest(
            answer_id=answer_id,
            reviewer_user_id=principal.user_id,
            owner_user_id=principal.owner_filter(),
            value=body.score,
            comment=body.comment,
        ),
    )
    return review_task_from_proto(task)
